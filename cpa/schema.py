"""The one declaration of the facility worksheet.

Every table of the worksheet is declared here once: its columns, their types, which column holds
the unit of which number and what dimensions it may have, the choices of each category column,
and the labels and help text in Vietnamese and English. The text worksheet reader and writer,
the blank worksheets in ``worksheets/``, the Excel template and importer, and the worksheet
reference in the docs are all generated from, or checked against, this module.

Column types
------------
``id``      a short identifier: letters, digits, ``_``, ``-``, ``.``
``text``    free text (NFC-normalised)
``number``  a number read in the worksheet's ``number_locale``
``int``     a whole number
``date``    an ISO date ``YYYY-MM-DD``
``bool``    yes/no (``có``/``không`` accepted)
``choice``  one of the choices of :data:`CHOICES` (id, or its English or Vietnamese label)
``ref``     the id of a row of another table (``ref`` names it)
``unit``    a unit (see :mod:`cpa.units`); ``dims`` lists the dimensions allowed
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache


@dataclass(frozen=True)
class Choice:
    id: str
    en: str
    vi: str
    code: str = ""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    en: str
    vi: str
    help_en: str = ""
    help_vi: str = ""
    required: bool = False
    choices: str = ""        # name in CHOICES, for type "choice"
    ref: str = ""            # table name, for type "ref"
    dims: tuple = ()         # allowed dimensions, for type "unit"
    unit: str = ""           # fixed unit of a number column (e.g. "%", "day", "yr")
    unit_column: str = ""    # the column holding this number's unit
    default: str = ""

    def label(self, lang: str) -> str:
        return self.vi if lang == "vi" else self.en

    def help(self, lang: str) -> str:
        return self.help_vi if lang == "vi" else self.help_en


@dataclass(frozen=True)
class Table:
    name: str
    en: str
    vi: str
    help_en: str
    help_vi: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    keyvalue: bool = False   # a two-column field/value table (the facility profile)
    required: bool = False

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def label(self, lang: str) -> str:
        return self.vi if lang == "vi" else self.en

    def help(self, lang: str) -> str:
        return self.help_vi if lang == "vi" else self.help_en


def _c(*args):
    return tuple(Choice(*a) for a in args)


#: Choice lists. Each choice has an id (what the canonical worksheet holds), an English and a
#: Vietnamese label (either is accepted on input) and, for option categories, the short code
#: Vietnamese reports use.
CHOICES: dict[str, tuple[Choice, ...]] = {
    "yesno": _c(("yes", "yes", "có"), ("no", "no", "không")),
    "number_locale": _c(
        ("plain", "plain: 1234.5", "thường: 1234.5"),
        ("vi", "Vietnamese: 1.234,5", "tiếng Việt: 1.234,5"),
        ("en", "English: 1,234.5", "tiếng Anh: 1,234.5"),
    ),
    "sector": _c(
        ("textile", "textile dyeing and finishing", "dệt nhuộm"),
        ("tapioca", "tapioca (cassava) starch", "tinh bột sắn"),
        ("rubber", "natural rubber processing", "chế biến mủ cao su"),
        ("cashew", "cashew nut processing", "chế biến hạt điều"),
        ("wood", "wood furniture", "chế biến gỗ"),
        ("metal_finishing", "electroplating and metal finishing", "xi mạ kim loại"),
        ("ceramics", "ceramics and pottery", "gốm sứ"),
        ("food", "other food processing", "chế biến thực phẩm khác"),
        ("other", "other", "khác"),
    ),
    "period_kind": _c(
        ("baseline", "baseline", "cơ sở (trước SXSH)"),
        ("monitoring", "monitoring", "giám sát (sau SXSH)"),
    ),
    "stream_kind": _c(
        ("raw_material", "raw material", "nguyên liệu"),
        ("auxiliary", "auxiliary material / chemical", "vật tư phụ / hóa chất"),
        ("water", "water", "nước"),
        ("fuel", "fuel", "nhiên liệu"),
        ("electricity", "electricity", "điện"),
        ("steam", "steam / heat", "hơi nước / nhiệt"),
        ("intermediate", "intermediate (between steps)", "bán thành phẩm"),
        ("product", "product", "sản phẩm"),
        ("by_product", "by-product", "phụ phẩm"),
        ("wastewater", "wastewater", "nước thải"),
        ("solid_waste", "solid waste", "chất thải rắn"),
        ("hazardous_waste", "hazardous waste", "chất thải nguy hại"),
        ("air_emission", "air emission", "khí thải"),
        ("loss", "loss", "tổn thất"),
    ),
    "basis": _c(
        ("measured", "measured", "đo đạc"),
        ("estimated", "estimated", "ước tính"),
        ("calculated", "calculated", "tính toán"),
    ),
    "time_of_use": _c(
        ("flat", "flat (single rate)", "một giá"),
        ("normal", "normal hours", "giờ bình thường"),
        ("peak", "peak hours", "giờ cao điểm"),
        ("off_peak", "off-peak hours", "giờ thấp điểm"),
    ),
    "price_component": _c(
        ("purchase", "purchase price", "giá mua"),
        ("sale", "sale price / revenue", "giá bán / doanh thu"),
        ("treatment", "treatment cost", "chi phí xử lý"),
        ("disposal", "disposal cost", "chi phí thải bỏ"),
        ("fee", "fee or levy", "phí"),
    ),
    "cause_category": _c(
        ("raw_material", "raw material", "nguyên liệu đầu vào"),
        ("process_control", "process control", "kiểm soát quy trình"),
        ("equipment", "equipment", "thiết bị"),
        ("technology", "technology", "công nghệ"),
        ("housekeeping", "housekeeping", "quản lý nội vi"),
        ("product_design", "product design", "thiết kế sản phẩm"),
        ("waste_handling", "waste handling", "quản lý chất thải"),
        ("people", "people and skills", "con người"),
    ),
    "option_category": _c(
        ("good_housekeeping", "good housekeeping", "quản lý nội vi tốt", "GH"),
        ("input_change", "input material change", "thay đổi nguyên liệu đầu vào", "IM"),
        ("process_control", "better process control", "kiểm soát quá trình tốt hơn", "PC"),
        ("equipment_modification", "equipment modification", "cải tiến thiết bị", "EM"),
        ("technology_change", "technology change", "thay đổi công nghệ", "TC"),
        ("onsite_recovery", "on-site recovery and reuse", "tuần hoàn, tái sử dụng tại chỗ", "OR"),
        ("by_product", "production of useful by-product", "sản xuất sản phẩm phụ hữu ích", "BP"),
        ("product_modification", "product modification", "cải tiến sản phẩm", "PM"),
    ),
    "screening": _c(
        ("implement_now", "implement now", "thực hiện ngay"),
        ("study_further", "study further", "cần nghiên cứu thêm"),
        ("reject", "reject", "loại bỏ"),
    ),
    "option_status": _c(
        ("proposed", "proposed", "đề xuất"),
        ("selected", "selected", "được lựa chọn"),
        ("implemented", "implemented", "đã thực hiện"),
        ("verified", "verified", "đã kiểm chứng"),
    ),
    "effort": _c(
        ("low", "low (no/low cost)", "thấp (không/ít chi phí)"),
        ("medium", "medium", "trung bình"),
        ("high", "high (investment)", "cao (cần đầu tư)"),
    ),
    "effect": _c(
        ("reduce_share", "reduce by a share of the baseline (%)", "giảm theo tỷ lệ so với cơ sở (%)"),
        ("reduce_amount", "reduce by an amount per year", "giảm một lượng mỗi năm"),
        ("reduce_per_unit", "reduce per unit of product", "giảm trên một đơn vị sản phẩm"),
        ("substitute", "substitute by another stream (energy basis)", "thay thế bằng dòng khác (theo năng lượng)"),
        ("recover", "recover a waste stream (%)", "thu hồi dòng thải (%)"),
        ("money", "other saving (+) or cost (−) per year", "tiết kiệm (+) hoặc chi phí (−) khác mỗi năm"),
    ),
    "factor_name": _c(
        ("ncv", "net calorific value", "nhiệt trị thấp"),
        ("co2", "CO2 emission factor per energy", "hệ số phát thải CO2 theo năng lượng"),
        ("ch4", "CH4 emission factor per energy", "hệ số phát thải CH4"),
        ("n2o", "N2O emission factor per energy", "hệ số phát thải N2O"),
        ("toe", "regulatory TOE factor (Vietnam)", "hệ số quy đổi TOE (Việt Nam)"),
        ("grid_ef", "grid emission factor of a year", "hệ số phát thải lưới điện của năm"),
        ("density", "density", "khối lượng riêng"),
        ("energy_content", "energy content (steam enthalpy)", "nhiệt lượng (entanpi hơi)"),
        ("mass_per_unit", "mass per unit of product", "khối lượng trên một đơn vị sản phẩm"),
    ),
    "factor_status": _c(
        ("measured", "measured", "đo đạc"),
        ("supplier", "supplier's value", "số liệu nhà cung cấp"),
        ("official", "official", "chính thức"),
        ("secondary copy", "secondary copy", "bản sao thứ cấp"),
        ("estimate", "estimate", "ước tính"),
    ),
}

#: Dimensions a flow of each stream kind may be recorded in.
KIND_DIMS: dict[str, tuple[str, ...]] = {
    "raw_material": ("mass", "volume", "count", "area"),
    "auxiliary": ("mass", "volume"),
    "water": ("volume", "mass"),
    "fuel": ("mass", "volume", "normal_volume", "energy"),
    "electricity": ("energy",),
    "steam": ("mass", "energy"),
    "intermediate": ("mass", "volume", "count", "area"),
    "product": ("mass", "volume", "count", "area"),
    "by_product": ("mass", "volume", "count", "area"),
    "wastewater": ("volume", "mass"),
    "solid_waste": ("mass", "volume"),
    "hazardous_waste": ("mass", "volume"),
    "air_emission": ("mass", "normal_volume", "emission"),
    "loss": ("mass", "volume", "energy"),
}

_FLOW_DIMS = ("mass", "volume", "normal_volume", "energy", "count", "area", "emission")


def _col(name, type_, en, vi, help_en="", help_vi="", **kw) -> Column:
    return Column(name, type_, en, vi, help_en, help_vi, **kw)


_NOTE = _col("note", "text", "note", "ghi chú", "Anything a reader should know.", "Ghi chú thêm.")

TABLES: tuple[Table, ...] = (
    Table(
        "facility", "Facility profile", "Thông tin cơ sở",
        "One row per field: the facility's identity, settings of the worksheet and its narrative.",
        "Mỗi dòng một trường: thông tin doanh nghiệp, thiết lập của phiếu và phần mô tả.",
        (
            _col("id", "id", "facility id", "mã cơ sở", "Short unique id, used in file names.", "Mã ngắn, duy nhất.", required=True),
            _col("name", "text", "name (Vietnamese)", "tên cơ sở", "Registered name.", "Tên đăng ký.", required=True),
            _col("name_en", "text", "name (English)", "tên tiếng Anh"),
            _col("sector", "choice", "sector", "ngành", choices="sector", required=True),
            _col("location", "text", "location (district, province)", "địa điểm (huyện, tỉnh)", required=True),
            _col("address", "text", "address", "địa chỉ"),
            _col("established", "int", "year established", "năm thành lập"),
            _col("employees", "int", "employees", "số lao động"),
            _col("capacity", "text", "design capacity (Vietnamese)", "công suất thiết kế"),
            _col("capacity_en", "text", "design capacity (English)", "công suất thiết kế (tiếng Anh)"),
            _col("products_vi", "text", "main products (Vietnamese)", "sản phẩm chính"),
            _col("products_en", "text", "main products (English)", "sản phẩm chính (tiếng Anh)"),
            _col("illustrative", "bool", "illustrative example", "ví dụ minh họa", "yes for a fictional facility: every output says so.", "có nếu là cơ sở giả định: mọi kết quả sẽ ghi rõ.", default="no"),
            _col("number_locale", "choice", "number format of this worksheet", "định dạng số của phiếu", "plain (1234.5), vi (1.234,5) or en (1,234.5).", "plain (1234.5), vi (1.234,5) hoặc en (1,234.5).", choices="number_locale", default="plain"),
            _col("currency", "text", "currency", "đơn vị tiền tệ", "VND.", "VND.", default="VND"),
            _col("reference_product", "ref", "reference product", "sản phẩm quy chiếu", "The product stream per unit of which consumption is measured.", "Sản phẩm dùng để tính tiêu hao trên một đơn vị sản phẩm.", ref="streams", required=True),
            _col("operating_days_per_year", "number", "operating days per year", "số ngày vận hành/năm", "Used to annualise a period.", "Dùng để quy đổi ra năm.", unit="day"),
            _col("tolerance_mass", "number", "closure tolerance, mass", "sai số cân bằng vật chất", unit="%", default="5"),
            _col("tolerance_water", "number", "closure tolerance, water", "sai số cân bằng nước", unit="%", default="5"),
            _col("tolerance_energy", "number", "closure tolerance, energy", "sai số cân bằng năng lượng", unit="%", default="5"),
            _col("water_in_mass_balance", "bool", "count water in the mass balance", "tính nước trong cân bằng vật chất", default="no"),
            _col("problem_vi", "text", "environmental problem before CP (Vietnamese)", "vấn đề môi trường trước SXSH"),
            _col("problem_en", "text", "environmental problem before CP (English)", "vấn đề môi trường trước SXSH (tiếng Anh)"),
            _col("audit_focus", "text", "audit focus (Vietnamese)", "trọng tâm đánh giá"),
            _col("audit_focus_en", "text", "audit focus (English)", "trọng tâm đánh giá (tiếng Anh)"),
            _col("consultant", "text", "consultant (Vietnamese)", "đơn vị tư vấn"),
            _col("consultant_en", "text", "consultant (English)", "đơn vị tư vấn (tiếng Anh)"),
            _col("contact", "text", "contact", "liên hệ"),
        ),
        keyvalue=True, required=True,
    ),
    Table(
        "team", "CP team", "Đội SXSH",
        "The cleaner-production team (DESIRE task 1).", "Đội sản xuất sạch hơn (nhiệm vụ 1).",
        (
            _col("name", "text", "name", "họ tên", required=True),
            _col("role", "text", "role (Vietnamese)", "chức vụ", required=True),
            _col("department", "text", "department (Vietnamese)", "bộ phận"),
            _col("responsibility", "text", "responsibility in the team (Vietnamese)", "trách nhiệm trong đội"),
            _col("leader", "bool", "team leader", "trưởng nhóm", default="no"),
            _col("role_en", "text", "role (English)", "chức vụ (tiếng Anh)"),
            _col("department_en", "text", "department (English)", "bộ phận (tiếng Anh)"),
            _col("responsibility_en", "text", "responsibility in the team (English)", "trách nhiệm trong đội (tiếng Anh)"),
        ),
        key=("name",),
    ),
    Table(
        "periods", "Periods", "Giai đoạn",
        "A baseline period and any number of monitoring periods; dates inclusive.",
        "Một giai đoạn cơ sở và các giai đoạn giám sát; ngày tính cả hai đầu.",
        (
            _col("id", "id", "period id", "mã giai đoạn", required=True),
            _col("kind", "choice", "kind", "loại", choices="period_kind", required=True),
            _col("start", "date", "first day", "ngày bắt đầu", "YYYY-MM-DD", "YYYY-MM-DD", required=True),
            _col("end", "date", "last day", "ngày kết thúc", "YYYY-MM-DD", "YYYY-MM-DD", required=True),
            _col("operating_days", "number", "operating days", "số ngày vận hành", unit="day", required=True),
            _col("operating_hours", "number", "operating hours", "số giờ vận hành", unit="h"),
            _col("label_vi", "text", "label (Vietnamese)", "tên giai đoạn"),
            _col("label_en", "text", "label (English)", "tên giai đoạn (tiếng Anh)"),
            _NOTE,
        ),
        key=("id",), required=True,
    ),
    Table(
        "steps", "Process steps", "Công đoạn sản xuất",
        "Unit operations in process order (DESIRE task 2).", "Các công đoạn theo thứ tự (nhiệm vụ 2).",
        (
            _col("id", "id", "step id", "mã công đoạn", required=True),
            _col("name_vi", "text", "name (Vietnamese)", "tên công đoạn", required=True),
            _col("name_en", "text", "name (English)", "tên tiếng Anh"),
            _col("description", "text", "description", "mô tả"),
            _col("problems", "text", "problem areas", "vấn đề tồn tại"),
        ),
        key=("id",), required=True,
    ),
    Table(
        "links", "Links between steps", "Liên kết giữa các công đoạn",
        "The process flow chart: which step feeds which (DESIRE task 4).",
        "Sơ đồ dòng: công đoạn nào chuyển sang công đoạn nào (nhiệm vụ 4).",
        (
            _col("from", "ref", "from step", "từ công đoạn", ref="steps", required=True),
            _col("to", "ref", "to step", "đến công đoạn", ref="steps", required=True),
            _col("material", "text", "what passes", "vật liệu chuyển"),
            _col("material_vi", "text", "what passes (Vietnamese)", "vật liệu chuyển (tiếng Việt)"),
            _col("material_en", "text", "what passes (English)", "vật liệu chuyển (tiếng Anh)"),
            _NOTE,
        ),
        key=("from", "to"),
    ),
    Table(
        "streams", "Streams", "Dòng vật chất và năng lượng",
        "Every material, water and energy stream that flows, once; flows, prices and options refer to it.",
        "Mỗi dòng vật chất, nước, năng lượng khai báo một lần; các bảng khác tham chiếu đến.",
        (
            _col("id", "id", "stream id", "mã dòng", required=True),
            _col("name_vi", "text", "name (Vietnamese)", "tên dòng", required=True),
            _col("name_en", "text", "name (English)", "tên tiếng Anh"),
            _col("kind", "choice", "kind", "loại", choices="stream_kind", required=True),
            _col("fuel", "choice", "fuel or carrier (for factors)", "loại nhiên liệu (để tra hệ số)", "Required for fuels: picks calorific value, CO2 and TOE factors.", "Bắt buộc với nhiên liệu.", choices="fuel"),
            _col("main_material", "bool", "main material (own indicator)", "nguyên liệu chính (có chỉ số riêng)", default="no"),
            _col("lost_material", "ref", "material lost in this waste", "vật liệu bị mất theo dòng thải", "For a waste or loss stream: the purchased input it is lost from (its price values the loss).", "Với dòng thải/tổn thất: đầu vào bị mất theo (dùng giá mua để tính chi phí).", ref="streams"),
            _NOTE,
        ),
        key=("id",), required=True,
    ),
    Table(
        "production", "Production", "Sản lượng",
        "Output of each product per period.", "Sản lượng từng sản phẩm theo giai đoạn.",
        (
            _col("period", "ref", "period", "giai đoạn", ref="periods", required=True),
            _col("product", "ref", "product", "sản phẩm", ref="streams", required=True),
            _col("quantity", "number", "quantity", "số lượng", unit_column="unit", required=True),
            _col("unit", "unit", "unit", "đơn vị", dims=("mass", "volume", "count", "area"), required=True),
            _col("basis", "choice", "basis", "cơ sở số liệu", choices="basis", required=True),
            _NOTE,
        ),
        key=("period", "product"), required=True,
    ),
    Table(
        "flows", "Flows", "Dòng vào/ra",
        "Every input and output per period. Leave 'from' empty for what enters the facility and 'to' empty for what leaves it.",
        "Mọi đầu vào, đầu ra theo giai đoạn. Để trống 'từ' nếu đi vào cơ sở, để trống 'đến' nếu ra khỏi cơ sở.",
        (
            _col("period", "ref", "period", "giai đoạn", ref="periods", required=True),
            _col("stream", "ref", "stream", "dòng", ref="streams", required=True),
            _col("from", "ref", "from step", "từ công đoạn", "Empty: from outside the facility.", "Trống: từ bên ngoài.", ref="steps"),
            _col("to", "ref", "to step", "đến công đoạn", "Empty: leaves the facility.", "Trống: ra khỏi cơ sở.", ref="steps"),
            _col("quantity", "number", "quantity", "số lượng", unit_column="unit", required=True),
            _col("unit", "unit", "unit", "đơn vị", dims=_FLOW_DIMS, required=True),
            _col("basis", "choice", "basis", "cơ sở số liệu", "Measured, or a qualified estimate; never a design figure.", "Đo đạc hoặc ước tính có cơ sở; không dùng số thiết kế.", choices="basis", required=True),
            _col("uncertainty", "number", "uncertainty (±)", "độ không đảm bảo (±)", unit="%"),
            _col("time_of_use", "choice", "time of use (electricity)", "khung giờ (điện)", choices="time_of_use"),
            _col("note", "text", "source of the figure", "nguồn số liệu"),
        ),
        key=("period", "stream", "from", "to", "time_of_use"), required=True,
    ),
    Table(
        "stocks", "Stock changes", "Thay đổi tồn kho",
        "Accumulation (+) or depletion (−) inside a step over a period.", "Tích lũy (+) hoặc giảm (−) trong công đoạn.",
        (
            _col("period", "ref", "period", "giai đoạn", ref="periods", required=True),
            _col("step", "ref", "step", "công đoạn", ref="steps", required=True),
            _col("stream", "ref", "stream", "dòng", ref="streams", required=True),
            _col("change", "number", "change (+ accumulates)", "thay đổi (+ tích lũy)", unit_column="unit", required=True),
            _col("unit", "unit", "unit", "đơn vị", dims=_FLOW_DIMS, required=True),
            _col("basis", "choice", "basis", "cơ sở số liệu", choices="basis", required=True),
            _NOTE,
        ),
        key=("period", "step", "stream"),
    ),
    Table(
        "prices", "Prices and tariffs", "Giá và biểu giá",
        "Dated prices per unit: purchase, sale, treatment and disposal. Electricity may be split by time of use.",
        "Giá theo thời gian: mua, bán, xử lý, thải bỏ. Điện có thể theo khung giờ.",
        (
            _col("stream", "ref", "stream", "dòng", ref="streams", required=True),
            _col("component", "choice", "component", "thành phần", choices="price_component", required=True),
            _col("time_of_use", "choice", "time of use", "khung giờ", choices="time_of_use", default="flat"),
            _col("valid_from", "date", "valid from", "áp dụng từ", required=True),
            _col("valid_to", "date", "valid to", "áp dụng đến"),
            _col("price", "number", "price", "đơn giá", unit_column="unit", required=True),
            _col("unit", "unit", "unit", "đơn vị", "Money per unit of the stream, e.g. VND/kWh.", "Tiền trên đơn vị, ví dụ VND/kWh.", required=True),
            _col("source", "text", "source", "nguồn", "Invoice, tariff decision, quote.", "Hóa đơn, quyết định giá, báo giá.", required=True),
            _NOTE,
        ),
        key=("stream", "component", "time_of_use", "valid_from"),
    ),
    Table(
        "causes", "Causes of waste", "Nguyên nhân phát sinh chất thải",
        "Why each waste stream arises (DESIRE task 7).", "Nguyên nhân của từng dòng thải (nhiệm vụ 7).",
        (
            _col("id", "id", "cause id", "mã nguyên nhân", required=True),
            _col("stream", "ref", "waste stream", "dòng thải", ref="streams", required=True),
            _col("step", "ref", "step", "công đoạn", ref="steps"),
            _col("category", "choice", "cause category", "nhóm nguyên nhân", choices="cause_category", required=True),
            _col("description_vi", "text", "description (Vietnamese)", "mô tả", required=True),
            _col("description_en", "text", "description (English)", "mô tả (tiếng Anh)"),
        ),
        key=("id",),
    ),
    Table(
        "factors", "Factor overrides", "Hệ số riêng",
        "A measured or supplier's factor that replaces cpa's default for a stream or fuel.",
        "Hệ số đo đạc hoặc của nhà cung cấp thay cho hệ số mặc định.",
        (
            _col("applies_to", "text", "stream or fuel", "dòng hoặc nhiên liệu", "A stream id, a fuel id, or a year for grid_ef.", "Mã dòng, mã nhiên liệu, hoặc năm (với grid_ef).", required=True),
            _col("factor", "choice", "factor", "hệ số", choices="factor_name", required=True),
            _col("value", "number", "value", "giá trị", unit_column="unit", required=True),
            _col("unit", "unit", "unit", "đơn vị", required=True),
            _col("status", "choice", "status", "tình trạng", choices="factor_status", required=True),
            _col("source", "text", "source", "nguồn", required=True),
            _NOTE,
        ),
        key=("applies_to", "factor", "unit"),
    ),
    Table(
        "options", "Cleaner-production options", "Giải pháp SXSH",
        "The option register (DESIRE steps 3–5): category, screening, status, investment and economics.",
        "Danh mục giải pháp: nhóm, sàng lọc, tình trạng, đầu tư và hiệu quả kinh tế.",
        (
            _col("id", "id", "option id", "mã giải pháp", required=True),
            _col("title_vi", "text", "title (Vietnamese)", "tên giải pháp", required=True),
            _col("title_en", "text", "title (English)", "tên tiếng Anh"),
            _col("description_vi", "text", "description (Vietnamese)", "mô tả"),
            _col("description_en", "text", "description (English)", "mô tả (tiếng Anh)"),
            _col("category", "choice", "category", "nhóm giải pháp", choices="option_category", required=True),
            _col("step", "ref", "step", "công đoạn", ref="steps"),
            _col("stream", "ref", "waste stream addressed", "dòng thải liên quan", ref="streams"),
            _col("cause", "ref", "cause addressed", "nguyên nhân liên quan", ref="causes"),
            _col("screening", "choice", "screening", "sàng lọc", choices="screening", required=True),
            _col("screening_reason", "text", "reason for the screening", "lý do sàng lọc"),
            _col("status", "choice", "status", "tình trạng", choices="option_status", required=True),
            _col("date_selected", "date", "date selected", "ngày lựa chọn"),
            _col("date_implemented", "date", "date implemented", "ngày thực hiện"),
            _col("date_verified", "date", "date verified", "ngày kiểm chứng"),
            _col("responsible", "text", "responsible person", "người phụ trách"),
            _col("effort", "choice", "implementation effort", "mức độ thực hiện", choices="effort"),
            _col("investment_equipment", "number", "investment: equipment", "đầu tư: thiết bị", unit_column="money_unit"),
            _col("investment_installation", "number", "investment: installation", "đầu tư: lắp đặt", unit_column="money_unit"),
            _col("investment_engineering", "number", "investment: engineering", "đầu tư: thiết kế, kỹ thuật", unit_column="money_unit"),
            _col("investment_other", "number", "investment: other", "đầu tư: khác", unit_column="money_unit"),
            _col("grant", "number", "grant", "hỗ trợ tài chính", unit_column="money_unit"),
            _col("operating_cost_change", "number", "change in operating cost per year (+ more)", "thay đổi chi phí vận hành mỗi năm (+ tăng)", unit_column="money_unit"),
            _col("money_unit", "unit", "money unit", "đơn vị tiền", dims=("money",), default="VND"),
            _col("lifetime", "number", "lifetime", "tuổi thọ", unit="yr"),
            _col("discount_rate", "number", "discount rate", "tỷ lệ chiết khấu", unit="%"),
            _col("escalation", "number", "price escalation per year", "tỷ lệ tăng giá hằng năm", unit="%"),
            _col("order", "int", "order of application", "thứ tự áp dụng", "Options acting on one flow apply in this order, each on what the previous left.", "Các giải pháp cùng tác động một dòng được áp dụng theo thứ tự này."),
            _col("technical_notes", "text", "technical notes", "ghi chú kỹ thuật"),
            _col("environmental_notes", "text", "environmental notes", "ghi chú môi trường"),
        ),
        key=("id",),
    ),
    Table(
        "effects", "Effects of options", "Tác động của giải pháp",
        "What each option changes: a stream reduced, substituted or recovered, or money saved.",
        "Giải pháp làm thay đổi gì: giảm, thay thế, thu hồi một dòng, hoặc tiết kiệm tiền.",
        (
            _col("option", "ref", "option", "giải pháp", ref="options", required=True),
            _col("effect", "choice", "effect", "tác động", choices="effect", required=True),
            _col("stream", "ref", "stream", "dòng", ref="streams"),
            _col("value", "number", "value", "giá trị", unit_column="unit", required=True),
            _col("unit", "unit", "unit", "đơn vị", "%, the stream's unit per year, per unit of product, or money per year.", "%, đơn vị của dòng mỗi năm, trên đơn vị sản phẩm, hoặc tiền mỗi năm.", required=True),
            _col("to_stream", "ref", "substitute or destination stream", "dòng thay thế / nơi sử dụng", ref="streams"),
            _col("basis", "choice", "basis", "cơ sở số liệu", choices="basis", default="estimated"),
            _NOTE,
        ),
        key=("option", "effect", "stream", "to_stream"),
    ),
    Table(
        "monitoring", "Metered results of options", "Kết quả đo đạc của giải pháp",
        "Savings of an option metered in a monitoring period (realised, to compare with the estimate).",
        "Mức tiết kiệm đo được của giải pháp trong giai đoạn giám sát.",
        (
            _col("option", "ref", "option", "giải pháp", ref="options", required=True),
            _col("period", "ref", "period", "giai đoạn", ref="periods", required=True),
            _col("stream", "ref", "stream", "dòng", ref="streams", required=True),
            _col("saving", "number", "saving in the period", "lượng tiết kiệm trong giai đoạn", unit_column="unit", required=True),
            _col("unit", "unit", "unit", "đơn vị", dims=_FLOW_DIMS, required=True),
            _col("basis", "choice", "basis", "cơ sở số liệu", choices="basis", required=True),
            _NOTE,
        ),
        key=("option", "period", "stream"),
    ),
)


@lru_cache(maxsize=1)
def tables() -> dict[str, Table]:
    """Tables by name, in worksheet order."""
    return {t.name: t for t in TABLES}


def table(name: str) -> Table:
    return tables()[name]


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).strip().casefold()


@cache
def choices(name: str) -> tuple[Choice, ...]:
    """Choices of a list; ``fuel`` is the fuel catalogue of :mod:`cpa.factors`."""
    if name == "fuel":
        from cpa.factors import fuels

        return tuple(Choice(k, v["label_en"], v["label_vi"]) for k, v in fuels().items())
    return CHOICES[name]


@cache
def choice_lookup(name: str) -> dict[str, str]:
    """Map every accepted spelling (id, English, Vietnamese label, code) to the choice id."""
    out = {}
    for ch in choices(name):
        for text in (ch.id, ch.en, ch.vi, ch.code):
            if text:
                out[_fold(text)] = ch.id
    return out


@cache
def header_lookup(table_name: str) -> dict[str, str]:
    """Map every accepted header (column name, English or Vietnamese label) to the column name."""
    out = {}
    for c in table(table_name).columns:
        for text in (c.name, c.en, c.vi):
            out[_fold(text)] = c.name
    return out


@lru_cache(maxsize=1)
def table_lookup() -> dict[str, str]:
    """Map every accepted section title (table name, English or Vietnamese label) to its name."""
    out = {}
    for t in TABLES:
        for text in (t.name, t.en, t.vi):
            out[_fold(text)] = t.name
    return out
