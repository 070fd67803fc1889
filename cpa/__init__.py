"""cpa: cleaner-production assessment (sản xuất sạch hơn) with unit-aware worksheets.

The package is layered: ``cpa.units``, ``cpa.numbers``, ``cpa.factors`` and ``cpa.schema`` are the
foundation; ``cpa.worksheet`` reads and validates facility worksheets; calculation modules work on
tidy tables; charts, booklets and the CLI are thin layers on top. Importing ``cpa`` loads nothing
heavy.
"""

__version__ = "0.1.0"
