"""Bilingual (Simplified Chinese / English) clinical notes with planted personal identifiers.

Every note is assembled from randomly chosen and randomly ordered pieces (header lines, history,
examination, results, plan, contacts, signature), each with several phrasings. Identifiers are
drawn from lists written in this module and recorded as character spans ``[start, end)`` with a
label:

* ``NAME``       patient, relatives, clinicians (Chinese names from surname and given-name
  characters; English names from first and last names);
* ``ID_NUMBER``  18-character Chinese resident identity numbers with a valid GB 11643-1999 check
  character (ISO 7064 MOD 11-2);
* ``PHONE``      mainland mobile numbers (1[3-9] + 9 digits, sometimes spaced, hyphenated or
  with +86) and landlines with area codes;
* ``ADDRESS``    street addresses (Chinese, or pinyin in English notes);
* ``DATE``       calendar dates in many written forms (years alone and durations are not dates);
* ``MRN``        medical record / admission numbers.

The notes also contain many numbers that are not identifiers (ages, vital signs, laboratory
values, doses, durations, bed numbers, diagnosis codes), which is what makes "mask every number"
a poor strategy. All people, numbers and places are invented.
Hand-written on purpose: Faker has no Chinese resident-ID or clinical-note generator.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from medai.synthetic._io import write_jsonl
from medai.synthetic.core import DatasetSpec, GenContext

LABELS: tuple[str, ...] = ("NAME", "ID_NUMBER", "PHONE", "ADDRESS", "DATE", "MRN")
TEST_FRACTION = 0.3

SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
    "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
) + ["欧阳", "司马", "诸葛", "上官"]
GIVEN_CHARS = list(
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂文华建国红玉萍辉鹏飞宇浩婷雪琳晨欣怡子涵梓轩博思佳嘉晓"
    "峰志海波春燕梅丹凤慧颖新宁亮琴云斌俊立东健珍荣瑞凯彤"
)
FIRST_NAMES = (
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Susan Richard "
    "Jessica Joseph Sarah Thomas Karen Daniel Nancy Matthew Lisa Anthony Betty Mark Sandra Steven "
    "Ashley Andrew Emily Kevin Michelle Brian Amanda George Melissa Edward Rebecca Ryan Laura Jacob "
    "Olivia Wei Li Ming Hui Jun Xiaoling Chen Yan Fatima Omar Priya Arjun Sofia Lucas"
).split()
LAST_NAMES = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Wilson Anderson Taylor "
    "Thomas Moore Jackson Martin Lee Thompson White Harris Clark Lewis Robinson Walker Young Allen "
    "King Wright Scott Green Baker Adams Nelson Hill Campbell Mitchell Roberts Carter Phillips Wang "
    "Zhang Liu Chen Huang Zhao Wu Zhou Lin Khan Patel Singh Nguyen Kim Okafor Haddad"
).split()

# (province prefix or "", city, district, 6-digit division code, landline area code,
#  pinyin city, pinyin district)
PLACES = (
    ("", "北京市", "朝阳区", "110105", "010", "Beijing", "Chaoyang District"),
    ("", "北京市", "海淀区", "110108", "010", "Beijing", "Haidian District"),
    ("", "上海市", "徐汇区", "310104", "021", "Shanghai", "Xuhui District"),
    ("", "上海市", "浦东新区", "310115", "021", "Shanghai", "Pudong New Area"),
    ("广东省", "广州市", "天河区", "440106", "020", "Guangzhou", "Tianhe District"),
    ("广东省", "深圳市", "南山区", "440305", "0755", "Shenzhen", "Nanshan District"),
    ("浙江省", "杭州市", "西湖区", "330106", "0571", "Hangzhou", "Xihu District"),
    ("四川省", "成都市", "武侯区", "510107", "028", "Chengdu", "Wuhou District"),
    ("湖北省", "武汉市", "洪山区", "430111", "027", "Wuhan", "Hongshan District"),
    ("江苏省", "南京市", "鼓楼区", "320106", "025", "Nanjing", "Gulou District"),
    ("陕西省", "西安市", "雁塔区", "610113", "029", "Xi'an", "Yanta District"),
    ("", "重庆市", "渝中区", "500103", "023", "Chongqing", "Yuzhong District"),
)
ROADS = (
    ("中山", "Zhongshan"),
    ("人民", "Renmin"),
    ("解放", "Jiefang"),
    ("建设", "Jianshe"),
    ("和平", "Heping"),
    ("长江", "Changjiang"),
    ("学府", "Xuefu"),
    ("科技", "Keji"),
    ("文化", "Wenhua"),
    ("滨江", "Binjiang"),
    ("光明", "Guangming"),
    ("新华", "Xinhua"),
)
ROAD_DIR = (("", ""), ("东", "East "), ("西", "West "), ("南", "South "), ("北", "North "))
# Rural addresses: (province, city, county, pinyin county, pinyin city)
RURAL = (
    ("河北省", "保定市", "清苑县", "Qingyuan County", "Baoding"),
    ("河南省", "周口市", "商水县", "Shangshui County", "Zhoukou"),
    ("湖南省", "长沙市", "宁乡县", "Ningxiang County", "Changsha"),
    ("安徽省", "六安市", "霍山县", "Huoshan County", "Lu'an"),
)
TOWNS = (
    ("城关", "Chengguan"),
    ("新华", "Xinhua"),
    ("东风", "Dongfeng"),
    ("白马", "Baima"),
    ("石桥", "Shiqiao"),
)
VILLAGES = (
    ("张庄", "Zhangzhuang"),
    ("李家", "Lijia"),
    ("红旗", "Hongqi"),
    ("前进", "Qianjin"),
    ("大王", "Dawang"),
)
ESTATES = ("阳光花园", "锦绣家园", "翠湖小区", "金色港湾", "和谐家园", "枫林苑")
HOSPITALS_ZH = ("市第一人民医院", "中心医院", "医科大学附属医院", "区人民医院")
HOSPITALS_EN = ("City General Hospital", "Riverside Medical Centre", "University Hospital")

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_check_char(first17: str) -> str:
    """GB 11643-1999 check character (ISO 7064 MOD 11-2) for the first 17 digits of an ID."""
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError(f"need exactly 17 digits, got {first17!r}")
    return _ID_CHECK[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def id_is_valid(idn: str) -> bool:
    """True if ``idn`` is 17 digits plus the correct check character (digit or ``X``)."""
    return len(idn) == 18 and idn[:17].isdigit() and id_check_char(idn[:17]) == idn[17].upper()


class _Note:
    """Text builder that records the span of every identifier it appends."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.spans: list[dict] = []
        self.length = 0

    def add(self, text: str, label: str | None = None) -> None:
        if label is not None:
            self.spans.append(
                {"start": self.length, "end": self.length + len(text), "label": label}
            )
        self.parts.append(text)
        self.length += len(text)

    def seq(self, *pieces: str | tuple[str, str]) -> None:
        """Append pieces; a ``(text, label)`` tuple is an identifier."""
        for p in pieces:
            if isinstance(p, tuple):
                self.add(p[0], p[1])
            else:
                self.add(p)

    @property
    def text(self) -> str:
        return "".join(self.parts)


def _ordinal(d: int) -> str:
    return "th" if 10 <= d % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(d % 10, "th")


class _Faker:
    """Draws identifiers from one random stream."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.place = PLACES[rng.integers(len(PLACES))]

    def pick(self, seq: Sequence):
        return seq[int(self.rng.integers(len(seq)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def zh_name(self) -> str:
        given = "".join(self.pick(GIVEN_CHARS) for _ in range(1 + int(self.chance(0.7))))
        return self.pick(SURNAMES) + given

    def en_name(self, full: bool = True) -> str:
        return (
            f"{self.pick(FIRST_NAMES)} {self.pick(LAST_NAMES)}" if full else self.pick(LAST_NAMES)
        )

    def birth(self) -> tuple[int, int, int]:
        return (
            int(self.rng.integers(1935, 2010)),
            int(self.rng.integers(1, 13)),
            int(self.rng.integers(1, 29)),
        )

    def id_number(self, birth: tuple[int, int, int]) -> str:
        y, m, d = birth
        area = self.place[3] if self.chance(0.8) else self.pick(PLACES)[3]
        first17 = f"{area}{y:04d}{m:02d}{d:02d}{int(self.rng.integers(0, 1000)):03d}"
        return first17 + id_check_char(first17)

    def mobile(self) -> str:
        digits = f"1{int(self.rng.integers(3, 10))}{int(self.rng.integers(0, 10**9)):09d}"
        style = self.rng.integers(5)
        if style == 1:
            return f"{digits[:3]} {digits[3:7]} {digits[7:]}"
        if style == 2:
            return f"{digits[:3]}-{digits[3:7]}-{digits[7:]}"
        if style == 3:
            return f"+86 {digits}"
        return digits

    def landline(self) -> str:
        area = self.place[4]
        local = (
            int(self.rng.integers(2 * 10**7, 9 * 10**7))
            if len(area) == 3
            else int(self.rng.integers(2 * 10**6, 9 * 10**6))
        )
        local_s = str(local)
        style = self.rng.integers(3)
        if style == 1:
            return f"({area}) {local_s}"
        if style == 2:
            cut = len(local_s) - 4  # "1234 5678" or "347 9040"
            return f"{area}-{local_s[:cut]} {local_s[cut:]}"
        return f"{area}-{local_s}"

    def phone(self) -> str:
        return self.mobile() if self.chance(0.7) else self.landline()

    def zh_address(self) -> str:
        if self.chance(0.25):
            prov, city, county, _, _ = self.pick(RURAL)
            head = (prov if self.chance(0.5) else "") + city if self.chance(0.7) else ""
            return f"{head}{county}{self.pick(TOWNS)[0]}镇{self.pick(VILLAGES)[0]}村{int(self.rng.integers(1, 12))}组"
        prov, city, dist = self.place[:3]
        road, _ = self.pick(ROADS)
        rd, _ = self.pick(ROAD_DIR)
        head = (prov if self.chance(0.5) else "") + city + dist if self.chance(0.85) else dist
        no = f"{int(self.rng.integers(1, 999))}号"
        tail = ""
        if self.chance(0.6):
            tail = f"{self.pick(ESTATES)}{int(self.rng.integers(1, 30))}栋{int(self.rng.integers(1, 33))}{int(self.rng.integers(1, 9)):02d}室"
        return f"{head}{road}{rd}路{no}{tail}"

    def en_address(self) -> str:
        if self.chance(0.25):
            _, _, _, county, city = self.pick(RURAL)
            town, village = self.pick(TOWNS)[1], self.pick(VILLAGES)[1]
            return f"Group {int(self.rng.integers(1, 12))}, {village} Village, {town} Town, {county}, {city}"
        _, _, _, _, _, city, dist = self.place
        _, road = self.pick(ROADS)
        _, rd = self.pick(ROAD_DIR)
        no = int(self.rng.integers(1, 999))
        head = ""
        if self.chance(0.5):
            head = f"Room {int(self.rng.integers(1, 33))}{int(self.rng.integers(1, 9)):02d}, Building {int(self.rng.integers(1, 30))}, "
        return f"{head}{no} {road} {rd}Road, {dist}, {city}"

    def date(self, lang: str, year: int | None = None) -> str:
        y = year or int(self.rng.integers(2015, 2026))
        m, d = int(self.rng.integers(1, 13)), int(self.rng.integers(1, 29))
        months = "January February March April May June July August September October November December".split()
        if lang == "zh":
            return self.pick(
                (
                    f"{y}年{m}月",
                    f"{y}年{m}月{d}日",
                    f"{y}-{m:02d}-{d:02d}",
                    f"{y}/{m}/{d}",
                    f"{y}.{m:02d}.{d:02d}",
                    f"{m}月{d}日",
                )
            )
        return self.pick(
            (
                f"{d} {months[m - 1]} {y}",
                f"{d}{_ordinal(d)} of {months[m - 1]} {y}",
                f"{months[m - 1]} {y}",
                f"{months[m - 1]} {d}, {y}",
                f"{y}-{m:02d}-{d:02d}",
                f"{d:02d}/{m:02d}/{y}",
                f"{months[m - 1][:3]} {d} {y}",
            )
        )

    def mrn(self) -> str:
        style = self.rng.integers(3)
        if style == 0:
            return f"{self.pick(('ZY', 'MZ', 'IP', 'OP'))}{int(self.rng.integers(0, 10**8)):08d}"
        if style == 1:
            return f"{int(self.rng.integers(2015, 2026))}{int(self.rng.integers(0, 10**6)):06d}"
        return f"{int(self.rng.integers(0, 10**7)):07d}"


# ---------------------------------------------------------------- Chinese notes
_ZH_DX = (
    ("高血压病2级", "I10", "头晕、头痛"),
    ("2型糖尿病", "E11.9", "口干、多饮、多尿"),
    ("社区获得性肺炎", "J18.9", "发热、咳嗽、咳痰"),
    ("冠状动脉粥样硬化性心脏病", "I25.1", "活动后胸闷、胸痛"),
    ("慢性肾脏病3期", "N18.3", "双下肢水肿、乏力"),
    ("急性胃肠炎", "K52.9", "腹痛、腹泻"),
)
_ZH_REL = ("女儿", "儿子", "配偶", "妻子", "丈夫", "母亲", "父亲")


def _zh_note(f: _Faker) -> _Note:
    n = _Note()
    name, sex = f.zh_name(), f.pick(("男", "女"))
    birth = f.birth()
    age = 2025 - birth[0]
    dx, code, sx = f.pick(_ZH_DX)
    hosp = f.pick(HOSPITALS_ZH)

    def header() -> None:
        lines = [
            lambda: n.seq(
                f.pick(("姓名：", "患者姓名：", "姓名:")),
                (name, "NAME"),
                f"  性别：{sex}  年龄：{age}岁\n",
            ),
            lambda: n.seq(
                f.pick(("身份证号：", "身份证号码：", "公民身份号码 ")),
                (f.id_number(birth), "ID_NUMBER"),
                "\n",
            ),
            lambda: n.seq(
                f.pick(("住院号：", "病案号：", "门诊号：", "病历号 ")),
                (f.mrn(), "MRN"),
                f"  床号：{int(f.rng.integers(1, 60))}\n",
            ),
            lambda: n.seq(
                f.pick(("入院日期：", "就诊日期：", "入院时间：")), (f.date("zh"), "DATE"), "\n"
            ),
            lambda: n.seq(f.pick(("联系电话：", "电话：", "手机：")), (f.phone(), "PHONE"), "\n"),
            lambda: n.seq(
                f.pick(("现住址：", "家庭住址：", "住址：")), (f.zh_address(), "ADDRESS"), "\n"
            ),
        ]
        order = f.rng.permutation(len(lines))
        keep = [i for i in order if i == 0 or f.chance(0.8)]
        n.add(f"{hosp}  {f.pick(('入院记录', '门诊病历', '出院小结', '病程记录'))}\n")
        for i in keep:
            lines[i]()

    def history() -> None:
        days = int(f.rng.integers(2, 15))
        v = f.rng.integers(3)
        if v == 0:
            n.seq(
                "主诉：",
                f"{sx}{days}天。\n现病史：患者",
                (name, "NAME"),
                f"，{sex}，{age}岁，于",
                (f.date("zh"), "DATE"),
                f"无明显诱因出现{sx}，",
            )
        elif v == 1:
            n.seq(f"现病史：{age}岁{sex}性，{days}天前出现{sx}，")
        else:
            n.seq("病史摘要：患者", (name, "NAME"), f"自述{sx}已{days}天，")
        n.add(f.pick(("未予重视。", "自服药物后无好转。", "遂来我院就诊。")) + "\n")
        if f.chance(0.5):
            n.seq(
                f"既往史：{f.pick(('高血压', '糖尿病', '无特殊'))}病史{int(f.rng.integers(2, 20))}年，自{int(f.rng.integers(2005, 2024))}年起规律服药，",
                f.pick(("否认药物过敏史。", "青霉素过敏。")),
                "\n",
            )

    def exam() -> None:
        sbp, dbp = int(f.rng.integers(105, 185)), int(f.rng.integers(60, 110))
        n.add(
            f"查体：T {f.rng.uniform(36.2, 39.2):.1f}℃，P {int(f.rng.integers(55, 120))}次/分，R {int(f.rng.integers(14, 26))}次/分，BP {sbp}/{dbp}mmHg。"
        )
        n.add(f.pick(("神志清，精神可。", "双肺呼吸音粗。", "心律齐，未闻及杂音。")) + "\n")
        n.add(
            f"辅助检查：空腹血糖 {f.rng.uniform(4.2, 15.0):.1f} mmol/L，肌酐 {int(f.rng.integers(50, 260))} μmol/L，HbA1c {f.rng.uniform(5.0, 11.0):.1f}%，WBC {f.rng.uniform(3.5, 16.0):.1f}×10^9/L。\n"
        )

    def plan() -> None:
        n.add(
            f"诊断：{dx}（{code}）\n处理：{f.pick(('二甲双胍 500 mg 每日2次', '氨氯地平 5 mg 每日1次', '头孢呋辛 1.5 g 每8小时1次'))}，"
        )
        n.seq(
            f.pick(("建议", "嘱")),
            f"{int(f.rng.integers(1, 5))}周后复诊，复诊日期：",
            (f.date("zh"), "DATE"),
            "。\n",
        )

    def contact() -> None:
        rel, rname = f.pick(_ZH_REL), f.zh_name()
        v = f.rng.integers(3)
        if v == 0:
            n.seq(
                f"由其{rel}",
                (rname, "NAME"),
                f.pick(("", "先生", "女士")) + "陪同就诊，联系方式：",
                (f.phone(), "PHONE"),
                "。\n",
            )
        elif v == 1:
            n.seq("紧急联系人：", (rname, "NAME"), f"（{rel}），电话 ", (f.phone(), "PHONE"), "\n")
        else:
            n.seq(
                f"家属（{rel}）",
                (rname, "NAME"),
                "已知情同意，住址同患者：",
                (f.zh_address(), "ADDRESS"),
                "。\n",
            )

    def signature() -> None:
        doc = f.zh_name()
        v = f.rng.integers(3)
        if v == 0:
            n.seq("记录医师：", (doc, "NAME"), "  ", (f.date("zh"), "DATE"), "\n")
        elif v == 1:
            n.seq("主治医师 ", (doc, "NAME"), "，签名日期 ", (f.date("zh"), "DATE"), "\n")
        else:
            n.seq((doc, "NAME"), "医生  ", (f.date("zh"), "DATE"), " 签\n")

    header()
    body = [history, exam, plan] + ([contact] if f.chance(0.7) else [])
    for i in f.rng.permutation(len(body)):
        body[i]()
    signature()
    return n


# ---------------------------------------------------------------- English notes
_EN_DX = (
    ("essential hypertension", "I10", "headache and dizziness"),
    ("type 2 diabetes", "E11.9", "thirst and polyuria"),
    ("community-acquired pneumonia", "J18.9", "fever and productive cough"),
    ("stable angina", "I20.8", "exertional chest tightness"),
    ("chronic kidney disease stage 3", "N18.3", "ankle swelling and fatigue"),
    ("acute gastroenteritis", "K52.9", "abdominal pain and diarrhoea"),
)
_EN_REL = ("daughter", "son", "wife", "husband", "mother", "father", "partner")


def _en_note(f: _Faker) -> _Note:
    n = _Note()
    name = f.en_name()
    first, last = name.split()
    header_name = f"{last.upper()}, {first}" if f.chance(0.25) else name
    sex = f.pick(("male", "female"))
    birth = f.birth()
    age = 2025 - birth[0]
    dx, code, sx = f.pick(_EN_DX)

    def header() -> None:
        lines = [
            lambda: n.seq(
                f.pick(("Patient: ", "Name: ", "Patient name: ")),
                (header_name, "NAME"),
                f"   Sex: {sex}   Age: {age}\n",
            ),
            lambda: n.seq(
                f.pick(("Resident ID: ", "PRC ID no. ", "ID card: ")),
                (f.id_number(birth), "ID_NUMBER"),
                "\n",
            ),
            lambda: n.seq(
                f.pick(("MRN: ", "Hospital no. ", "Record #")),
                (f.mrn(), "MRN"),
                f"   Bed {int(f.rng.integers(1, 60))}\n",
            ),
            lambda: n.seq(
                f.pick(("Admitted: ", "Date of visit: ", "Seen on ")), (f.date("en"), "DATE"), "\n"
            ),
            lambda: n.seq(f.pick(("Tel: ", "Phone: ", "Mobile: ")), (f.phone(), "PHONE"), "\n"),
            lambda: n.seq(
                f.pick(("Address: ", "Home address: ", "Lives at ")),
                (f.en_address(), "ADDRESS"),
                "\n",
            ),
        ]
        order = f.rng.permutation(len(lines))
        keep = [i for i in order if i == 0 or f.chance(0.8)]
        n.add(
            f"{f.pick(HOSPITALS_EN)} - {f.pick(('Admission note', 'Clinic letter', 'Discharge summary', 'Progress note'))}\n"
        )
        for i in keep:
            lines[i]()

    def history() -> None:
        days = int(f.rng.integers(2, 15))
        v = f.rng.integers(3)
        if v == 0:
            n.seq(
                f"HPI: {f.pick(('Mr', 'Ms', 'Mrs'))} ",
                (last, "NAME"),
                f" is a {age}-year-old {sex} with {days} days of {sx}, starting on ",
                (f.date("en"), "DATE"),
                ". ",
            )
        elif v == 1:
            n.seq(f"History: {age} y/o {sex}, {sx} for {days} days. ")
        else:
            n.seq("History: ", (name, "NAME"), f" reports {sx} over the past {days} days. ")
        n.add(
            f.pick(
                (
                    "No recent travel.",
                    "Symptoms worse at night.",
                    "Self-medicated without relief.",
                    f"Known to this clinic since {int(f.rng.integers(2005, 2024))}.",
                )
            )
            + "\n"
        )

    def exam() -> None:
        sbp, dbp = int(f.rng.integers(105, 185)), int(f.rng.integers(60, 110))
        n.add(
            f"Exam: T {f.rng.uniform(36.2, 39.2):.1f} C, HR {int(f.rng.integers(55, 120))} bpm, RR {int(f.rng.integers(14, 26))}/min, BP {sbp}/{dbp} mmHg, SpO2 {int(f.rng.integers(88, 100))}%.\n"
        )
        n.add(
            f"Labs: glucose {f.rng.uniform(4.2, 15.0):.1f} mmol/L, creatinine {int(f.rng.integers(50, 260))} umol/L, HbA1c {f.rng.uniform(5.0, 11.0):.1f}%, eGFR {int(f.rng.integers(20, 110))} mL/min/1.73m2.\n"
        )

    def plan() -> None:
        n.add(
            f"Assessment: {dx} ({code}). Plan: {f.pick(('metformin 500 mg twice daily', 'amlodipine 5 mg once daily', 'cefuroxime 1.5 g every 8 hours'))}; "
        )
        n.seq(f"review in {int(f.rng.integers(2, 5))} weeks, on ", (f.date("en"), "DATE"), ".\n")

    def contact() -> None:
        rel, rname = f.pick(_EN_REL), f.en_name()
        v = f.rng.integers(3)
        if v == 0:
            n.seq(
                f"Accompanied by {rel} ",
                (rname, "NAME"),
                ", reachable on ",
                (f.phone(), "PHONE"),
                ".\n",
            )
        elif v == 1:
            n.seq("Next of kin: ", (rname, "NAME"), f" ({rel}), tel ", (f.phone(), "PHONE"), "\n")
        else:
            n.seq(
                f"Consent discussed with {rel} ",
                (rname, "NAME"),
                ", who lives at ",
                (f.en_address(), "ADDRESS"),
                ".\n",
            )

    def signature() -> None:
        doc = f.en_name()
        v = f.rng.integers(3)
        if v == 0:
            n.seq("Signed: Dr ", (doc, "NAME"), ", ", (f.date("en"), "DATE"), "\n")
        elif v == 1:
            n.seq("Attending: ", (doc, "NAME"), " MD   Date: ", (f.date("en"), "DATE"), "\n")
        else:
            n.seq(
                "Dictated by Dr. ", (doc.split()[-1], "NAME"), " on ", (f.date("en"), "DATE"), "\n"
            )

    header()
    body = [history, exam, plan] + ([contact] if f.chance(0.7) else [])
    for i in f.rng.permutation(len(body)):
        body[i]()
    signature()
    return n


def make_note(rng: np.random.Generator, lang: str) -> tuple[str, list[dict]]:
    """One note in ``lang`` ("zh" or "en"): its text and identifier spans."""
    f = _Faker(rng)
    note = _zh_note(f) if lang == "zh" else _en_note(f)
    return note.text, note.spans


def _covered(span: dict, intervals: Sequence[tuple[int, int]]) -> bool:
    need = set(range(span["start"], span["end"]))
    for s, e in intervals:
        need -= set(range(s, e))
    return not need


def score_spans(gold: Iterable[Sequence[dict]], pred: Iterable[Sequence[dict]]) -> dict[str, float]:
    """De-identification scores over many notes (labels are ignored: masking is what counts).

    * ``recall``: share of gold identifiers whose every character is inside some predicted span
      (an identifier half-masked still leaks);
    * ``precision``: share of predicted spans with at least half their characters inside gold
      spans (so one huge span over the whole note does not count as correct).

    ``gold`` and ``pred`` hold, note by note, lists of ``{"start": int, "end": int, ...}``.
    """
    found = total = good = made = 0
    for g, p in zip(gold, pred, strict=True):
        p_iv = [(int(s["start"]), int(s["end"])) for s in p]
        g_chars = set()
        for s in g:
            g_chars.update(range(s["start"], s["end"]))
            total += 1
            found += _covered(s, p_iv)
        for s, e in p_iv:
            if e <= s:
                continue
            made += 1
            good += len(g_chars.intersection(range(s, e))) * 2 >= e - s
    return {
        "recall": found / total if total else 1.0,
        "precision": good / made if made else 1.0,
        "n_gold": float(total),
        "n_pred": float(made),
    }


def _write(ctx: GenContext) -> None:
    assign = ctx.rng("assign")
    langs = assign.choice(["zh", "en"], size=ctx.n)
    is_test = assign.random(ctx.n) < TEST_FRACTION
    train, test, hidden = [], [], []
    for i in range(ctx.n):
        # a test note's text and identifiers come from the hidden streams
        text, spans = make_note(ctx.stream(bool(is_test[i]), "note", i), str(langs[i]))
        rec = {"id": f"note-{i:06d}", "lang": str(langs[i]), "text": text}
        if is_test[i]:
            test.append(rec)
            hidden.append({"id": rec["id"], "spans": spans})
        else:
            train.append({**rec, "spans": spans})
        if (i + 1) % 100 == 0:
            ctx.progress(100)
    ctx.progress(ctx.n % 100)
    write_jsonl(ctx.public_dir / "train.jsonl", train)
    write_jsonl(ctx.public_dir / "test.jsonl", test)
    write_jsonl(ctx.hidden_dir / "test_spans.jsonl", hidden)


SPEC = DatasetSpec(
    name="notes",
    summary="bilingual (zh/en) clinical notes with planted identifiers and their character spans",
    default_n=600,
    formats=("jsonl",),
    write=_write,
    unit="notes",
    max_n=1_000_000,
)
