"""A synthetic medical knowledge base with questions, for retrieval and abstention.

The knowledge base is a handbook of a fictional "Synthetic Health Board" (SHB): short
guideline-style passages on common topics (blood pressure, diabetes screening, kidney disease,
lipids, asthma, sepsis, ...). The wording is written here and every number in it is drawn from a
plausible range by the seed, so the facts are *synthetic on purpose*: a question can only be
answered by retrieving the passage, not from memory of a real guideline, and nobody can mistake
them for clinical advice.

Questions come in two kinds:

* answerable: about one fact; the answer is the fact's value and ``passage_id`` the passage
  that states it;
* unanswerable: about something the handbook does not cover (other conditions, or an aspect of
  a covered topic it does not state); the right response is to abstain (``answer`` is null).

Facts (and so questions) are split between train and test, so test answers cannot be copied from
train answers: the test questions ask about facts no train question asks about.

The handbook has a Chinese edition (:mod:`medai.synthetic._kb_zh`): every passage has a Chinese
twin stating the same values, and Chinese questions (``lang: "zh"``) are added to both splits,
the same facts on the same side of the split as in English. ``model_answers.jsonl`` holds
recorded answers of fictional language models with rubric scores
(:mod:`medai.synthetic._kb_rubric`).
Hand-written on purpose: there is no library of synthetic guideline passages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medai.synthetic import _kb_rubric, _kb_zh
from medai.synthetic._io import write_jsonl
from medai.synthetic.core import DatasetSpec, GenContext

SOURCE = "Synthetic Health Board handbook (fictional; synthetic values, not for clinical use)"
SOURCE_ZH = "SHB手册中文版（虚构；数值为合成数据，不可用于临床）"
TEST_FRACTION = 0.3
ANSWERABLE_SHARE = 0.75
ZH_PER_QUESTION = 0.4  # Chinese questions added per English question (n counts English ones)


@dataclass(frozen=True)
class Fact:
    passage: str  # passage id
    slot: str
    low: float
    high: float
    step: float
    unit: str
    sentence: str  # "{v}" is replaced by the value with its unit
    questions: tuple[str, ...]


@dataclass(frozen=True)
class Passage:
    id: str
    topic: str
    title: str
    opening: str
    closing: str


P = Passage
PASSAGES: tuple[Passage, ...] = (
    P(
        "htn-dx",
        "hypertension",
        "Diagnosing raised blood pressure",
        "Raised blood pressure is confirmed only after repeated measurements on separate occasions.",
        "A single high clinic reading should never lead to a diagnosis on its own.",
    ),
    P(
        "htn-tx",
        "hypertension",
        "Blood pressure treatment targets",
        "Once hypertension is confirmed, treatment aims at a target that depends on age.",
        "Targets are relaxed for frail patients after a shared discussion.",
    ),
    P(
        "htn-fu",
        "hypertension",
        "Follow-up of treated hypertension",
        "People who start blood pressure medicine need regular review.",
        "Review also covers side effects, adherence and kidney function.",
    ),
    P(
        "dm-screen",
        "diabetes",
        "Screening adults for type 2 diabetes",
        "Adults without symptoms are offered a blood test for type 2 diabetes.",
        "People with a normal result return to routine screening.",
    ),
    P(
        "dm-dx",
        "diabetes",
        "Diagnostic thresholds for diabetes",
        "A diagnosis of diabetes rests on laboratory values rather than symptoms alone.",
        "Borderline results are repeated before a diagnosis is recorded.",
    ),
    P(
        "dm-tx",
        "diabetes",
        "Glycaemic targets in type 2 diabetes",
        "Most adults with type 2 diabetes are given an individual glycaemic target.",
        "Targets are loosened where hypoglycaemia would be dangerous.",
    ),
    P(
        "ckd-stage",
        "kidney",
        "Staging chronic kidney disease",
        "Chronic kidney disease is staged by the estimated glomerular filtration rate (eGFR) and by albuminuria.",
        "Staging needs two results at least three months apart.",
    ),
    P(
        "ckd-ref",
        "kidney",
        "When to refer kidney disease to a specialist",
        "Most chronic kidney disease is managed in primary care.",
        "Referral letters should include the last three eGFR results.",
    ),
    P(
        "lip-start",
        "lipids",
        "Starting a statin",
        "Statins are offered according to the estimated ten-year cardiovascular risk.",
        "Lifestyle advice is given whatever the decision about medicine.",
    ),
    P(
        "lip-target",
        "lipids",
        "Cholesterol targets and monitoring",
        "After a statin is started, LDL cholesterol is measured again to judge the response.",
        "Poor response prompts a check on adherence before a dose change.",
    ),
    P(
        "asthma",
        "asthma",
        "Reviewing asthma control",
        "Asthma control is judged from symptoms and reliever use.",
        "An asthma action plan is written with every patient.",
    ),
    P(
        "sepsis",
        "sepsis",
        "Recognising and treating sepsis",
        "Sepsis is suspected in any unwell patient with infection and organ dysfunction.",
        "Senior review is requested for every suspected case.",
    ),
    P(
        "af-ac",
        "atrial fibrillation",
        "Anticoagulation in atrial fibrillation",
        "Stroke risk in atrial fibrillation is estimated with a point score.",
        "Bleeding risk is assessed but is not by itself a reason to withhold treatment.",
    ),
    P(
        "obesity",
        "obesity",
        "Body-mass index bands",
        "Weight is classified by body-mass index (BMI) in kilograms per square metre.",
        "Waist circumference adds information when BMI is borderline.",
    ),
    P(
        "osteo",
        "osteoporosis",
        "Screening for osteoporosis",
        "Bone density scanning (DXA) is offered to people at higher fracture risk.",
        "Calcium and vitamin D intake are reviewed at the same visit.",
    ),
    P(
        "crc",
        "colorectal cancer",
        "Bowel cancer screening",
        "Bowel cancer screening uses a faecal immunochemical test (FIT) at home.",
        "A positive test leads to colonoscopy.",
    ),
    P(
        "flu",
        "vaccination",
        "Seasonal influenza vaccination",
        "The seasonal influenza vaccine is offered every autumn to groups at higher risk.",
        "Health workers are also encouraged to be vaccinated.",
    ),
    P(
        "smoke",
        "smoking",
        "Supporting people to stop smoking",
        "Every person who smokes is offered support to stop.",
        "Relapse is common and a new attempt is always welcome.",
    ),
    P(
        "anaemia",
        "anaemia",
        "Investigating anaemia in adults",
        "Anaemia is defined by a haemoglobin below a sex-specific threshold.",
        "Iron studies are part of the first investigations.",
    ),
    P(
        "thyroid",
        "thyroid",
        "Monitoring thyroid replacement",
        "People taking levothyroxine have their thyroid-stimulating hormone (TSH) checked.",
        "Dose changes are small and made one at a time.",
    ),
)

F = Fact
FACTS: tuple[Fact, ...] = (
    F(
        "htn-dx",
        "clinic_sbp",
        135,
        145,
        5,
        "mmHg",
        "In the clinic, hypertension is diagnosed when systolic pressure is at or above {v}.",
        (
            "What clinic systolic blood pressure confirms hypertension?",
            "At what systolic reading in clinic is high blood pressure diagnosed?",
            "Which clinic systolic threshold defines hypertension in the SHB handbook?",
        ),
    ),
    F(
        "htn-dx",
        "home_sbp",
        128,
        138,
        1,
        "mmHg",
        "With home monitoring the diagnostic threshold is a mean systolic pressure of {v}.",
        (
            "What average home systolic pressure counts as hypertension?",
            "Using home blood pressure monitoring, what systolic mean is diagnostic?",
            "Home BP readings: which systolic average means hypertension?",
        ),
    ),
    F(
        "htn-tx",
        "target_young",
        125,
        135,
        5,
        "mmHg",
        "For adults younger than 65 the systolic target is below {v}.",
        (
            "What systolic target applies to treated adults under 65?",
            "How low should systolic pressure be for a 50-year-old on treatment?",
            "Treatment goal for systolic blood pressure in younger adults?",
        ),
    ),
    F(
        "htn-tx",
        "target_old",
        135,
        150,
        5,
        "mmHg",
        "For adults aged 65 or over the systolic target is below {v}.",
        (
            "What systolic target applies to treated adults aged 65 and over?",
            "What is the blood pressure goal for an older patient of 75?",
            "Systolic treatment target for people over 65?",
        ),
    ),
    F(
        "htn-fu",
        "review_weeks",
        2,
        8,
        1,
        "weeks",
        "After a new medicine or a dose change, blood pressure is reviewed within {v}.",
        (
            "How soon is blood pressure rechecked after starting a new tablet?",
            "Within how many weeks should a dose change for hypertension be reviewed?",
            "When is the first review after changing antihypertensive dose?",
        ),
    ),
    F(
        "htn-fu",
        "annual_labs",
        6,
        24,
        6,
        "months",
        "Kidney function and potassium are checked every {v} in treated hypertension.",
        (
            "How often are potassium and kidney function checked in treated hypertension?",
            "What is the interval for renal function tests in people on blood pressure medicine?",
            "Electrolyte monitoring interval for treated hypertension?",
        ),
    ),
    F(
        "dm-screen",
        "start_age",
        35,
        45,
        5,
        "years",
        "Screening for type 2 diabetes starts at age {v} for adults without risk factors.",
        (
            "At what age does diabetes screening begin?",
            "From what age are adults without risk factors screened for type 2 diabetes?",
            "When should routine screening for diabetes start?",
        ),
    ),
    F(
        "dm-screen",
        "interval",
        2,
        4,
        1,
        "years",
        "After a normal result the diabetes screening test is repeated every {v}.",
        (
            "How often is diabetes screening repeated after a normal test?",
            "What is the rescreening interval for type 2 diabetes?",
            "If the screening blood test is normal, when is it repeated?",
        ),
    ),
    F(
        "dm-dx",
        "hba1c",
        6.3,
        6.8,
        0.1,
        "%",
        "An HbA1c of {v} or more is diagnostic of diabetes.",
        (
            "Which HbA1c value is diagnostic of diabetes?",
            "What HbA1c threshold confirms diabetes?",
            "Diabetes diagnosis: what is the HbA1c cut-off?",
        ),
    ),
    F(
        "dm-dx",
        "fpg",
        6.8,
        7.4,
        0.1,
        "mmol/L",
        "A fasting plasma glucose of {v} or more is diagnostic of diabetes.",
        (
            "What fasting glucose level diagnoses diabetes?",
            "Which fasting plasma glucose confirms diabetes?",
            "Fasting blood sugar threshold for a diabetes diagnosis?",
        ),
    ),
    F(
        "dm-tx",
        "target_hba1c",
        6.5,
        7.5,
        0.5,
        "%",
        "The usual HbA1c target in type 2 diabetes is {v}.",
        (
            "What HbA1c should most adults with type 2 diabetes aim for?",
            "Usual glycaemic target expressed as HbA1c?",
            "Target HbA1c for type 2 diabetes in the SHB handbook?",
        ),
    ),
    F(
        "dm-tx",
        "hba1c_check",
        3,
        6,
        3,
        "months",
        "HbA1c is measured every {v} until the target is reached.",
        (
            "How often is HbA1c measured while the target has not been reached?",
            "What is the HbA1c testing interval during treatment adjustment?",
            "When is HbA1c rechecked in poorly controlled diabetes?",
        ),
    ),
    F(
        "ckd-stage",
        "g3a_low",
        44,
        46,
        1,
        "mL/min/1.73m2",
        "Stage G3a covers an eGFR from {v} up to 59.",
        (
            "What is the lower eGFR bound of stage G3a kidney disease?",
            "Which eGFR marks the bottom of CKD stage 3a?",
            "Stage G3a chronic kidney disease starts at what eGFR?",
        ),
    ),
    F(
        "ckd-stage",
        "acr",
        2,
        4,
        1,
        "mg/mmol",
        "Albuminuria is present when the urine albumin-to-creatinine ratio is {v} or more.",
        (
            "What urine albumin-to-creatinine ratio defines albuminuria?",
            "ACR threshold for albuminuria in kidney disease staging?",
            "Above which ACR is a patient said to have albuminuria?",
        ),
    ),
    F(
        "ckd-ref",
        "ref_egfr",
        25,
        35,
        5,
        "mL/min/1.73m2",
        "Refer to a kidney specialist when eGFR falls below {v}.",
        (
            "Below what eGFR should a patient be referred to nephrology?",
            "At which eGFR is specialist kidney referral advised?",
            "What eGFR triggers referral to a renal specialist?",
        ),
    ),
    F(
        "ckd-ref",
        "ref_acr",
        30,
        70,
        10,
        "mg/mmol",
        "Referral is also advised when the albumin-to-creatinine ratio exceeds {v}.",
        (
            "What albumin-to-creatinine ratio prompts nephrology referral?",
            "Which urine ACR value means referral to the kidney team?",
            "Referral threshold for proteinuria measured as ACR?",
        ),
    ),
    F(
        "lip-start",
        "risk",
        7,
        12,
        1,
        "%",
        "A statin is offered when the ten-year cardiovascular risk is {v} or higher.",
        (
            "At what ten-year cardiovascular risk is a statin offered?",
            "Which 10-year risk threshold leads to statin treatment?",
            "When should a statin be started, in terms of cardiovascular risk?",
        ),
    ),
    F(
        "lip-target",
        "ldl",
        1.6,
        2.2,
        0.2,
        "mmol/L",
        "For people at high risk the LDL cholesterol target is below {v}.",
        (
            "What LDL cholesterol target applies to high-risk patients?",
            "How low should LDL be for someone at high cardiovascular risk?",
            "LDL goal in high-risk people on a statin?",
        ),
    ),
    F(
        "lip-target",
        "recheck",
        8,
        16,
        4,
        "weeks",
        "Lipids are measured again {v} after starting a statin.",
        (
            "When are lipids rechecked after a statin is started?",
            "How many weeks after starting a statin is cholesterol measured?",
            "Timing of the first lipid test on statin therapy?",
        ),
    ),
    F(
        "asthma",
        "reliever",
        2,
        4,
        1,
        "times a week",
        "Asthma is poorly controlled if the reliever inhaler is needed more than {v}.",
        (
            "How often can a reliever inhaler be used before asthma counts as poorly controlled?",
            "Reliever use above what frequency means uncontrolled asthma?",
            "What weekly reliever use signals poor asthma control?",
        ),
    ),
    F(
        "asthma",
        "review",
        6,
        12,
        6,
        "months",
        "Every person with asthma has a structured review every {v}.",
        (
            "How often is a routine asthma review due?",
            "What is the interval between structured asthma reviews?",
            "When should asthma patients be reviewed routinely?",
        ),
    ),
    F(
        "sepsis",
        "lactate",
        2,
        4,
        1,
        "mmol/L",
        "A lactate of {v} or more marks high-risk sepsis.",
        (
            "What lactate level indicates high-risk sepsis?",
            "Which serum lactate value marks severe sepsis risk?",
            "Lactate threshold for high-risk sepsis?",
        ),
    ),
    F(
        "sepsis",
        "abx_hours",
        1,
        3,
        1,
        "hours",
        "Intravenous antibiotics are given within {v} of recognising high-risk sepsis.",
        (
            "How quickly should antibiotics be given in high-risk sepsis?",
            "Within how many hours must IV antibiotics start for sepsis?",
            "Time limit for the first antibiotic dose in sepsis?",
        ),
    ),
    F(
        "af-ac",
        "score_men",
        1,
        2,
        1,
        "points",
        "Men with atrial fibrillation are offered anticoagulation at a score of {v} or more.",
        (
            "At what stroke risk score are men with atrial fibrillation anticoagulated?",
            "Which point score triggers anticoagulation for men in AF?",
            "Anticoagulation threshold score for a man with atrial fibrillation?",
        ),
    ),
    F(
        "af-ac",
        "score_women",
        2,
        3,
        1,
        "points",
        "Women with atrial fibrillation are offered anticoagulation at a score of {v} or more.",
        (
            "At what stroke risk score are women with atrial fibrillation anticoagulated?",
            "Which point score triggers anticoagulation for women in AF?",
            "Anticoagulation threshold score for a woman with atrial fibrillation?",
        ),
    ),
    F(
        "obesity",
        "overweight",
        23,
        25,
        1,
        "kg/m2",
        "A BMI of {v} or more counts as overweight.",
        (
            "From which BMI is a person classed as overweight?",
            "What body-mass index defines overweight?",
            "Overweight starts at what BMI?",
        ),
    ),
    F(
        "obesity",
        "obese",
        27,
        30,
        1,
        "kg/m2",
        "A BMI of {v} or more counts as obesity.",
        (
            "From which BMI is a person classed as obese?",
            "What body-mass index defines obesity?",
            "Obesity starts at what BMI?",
        ),
    ),
    F(
        "osteo",
        "dxa_age",
        60,
        70,
        5,
        "years",
        "Women are offered a DXA scan from age {v}.",
        (
            "At what age are women offered bone density scanning?",
            "From which age should women have a DXA scan?",
            "Osteoporosis screening age for women?",
        ),
    ),
    F(
        "osteo",
        "dxa_repeat",
        2,
        5,
        1,
        "years",
        "A DXA scan showing low bone mass is repeated after {v}.",
        (
            "When is a DXA scan repeated after showing low bone mass?",
            "Repeat interval for bone density scans in osteopenia?",
            "How many years between DXA scans for low bone mass?",
        ),
    ),
    F(
        "crc",
        "start",
        45,
        55,
        5,
        "years",
        "Bowel cancer screening with FIT starts at age {v}.",
        (
            "At what age does bowel cancer screening start?",
            "From which age is the FIT test sent for colorectal screening?",
            "Colorectal cancer screening start age?",
        ),
    ),
    F(
        "crc",
        "interval",
        1,
        2,
        1,
        "years",
        "The FIT kit is sent again every {v} after a negative result.",
        (
            "How often is the FIT kit repeated after a negative result?",
            "What is the bowel screening interval with FIT?",
            "After a normal FIT, when is the next one sent?",
        ),
    ),
    F(
        "flu",
        "age",
        60,
        65,
        5,
        "years",
        "Everyone aged {v} or over is offered the influenza vaccine.",
        (
            "From what age is the flu vaccine offered to everyone?",
            "What age qualifies for seasonal influenza vaccination?",
            "Influenza vaccination age threshold?",
        ),
    ),
    F(
        "smoke",
        "followup",
        2,
        6,
        1,
        "weeks",
        "A follow-up contact is made {v} after the quit date.",
        (
            "When is the follow-up after a smoking quit date?",
            "How many weeks after stopping smoking is the first follow-up?",
            "Smoking cessation follow-up timing after the quit date?",
        ),
    ),
    F(
        "anaemia",
        "hb_women",
        115,
        125,
        5,
        "g/L",
        "In women, anaemia is a haemoglobin below {v}.",
        (
            "What haemoglobin defines anaemia in women?",
            "Below which Hb is a woman anaemic?",
            "Haemoglobin threshold for anaemia in adult women?",
        ),
    ),
    F(
        "anaemia",
        "hb_men",
        125,
        135,
        5,
        "g/L",
        "In men, anaemia is a haemoglobin below {v}.",
        (
            "What haemoglobin defines anaemia in men?",
            "Below which Hb is a man anaemic?",
            "Haemoglobin threshold for anaemia in adult men?",
        ),
    ),
    F(
        "thyroid",
        "tsh_weeks",
        6,
        8,
        2,
        "weeks",
        "TSH is measured {v} after any levothyroxine dose change.",
        (
            "When is TSH checked after changing the levothyroxine dose?",
            "How many weeks after a thyroxine dose change is TSH measured?",
            "Timing of thyroid function tests after adjusting levothyroxine?",
        ),
    ),
)

# Questions the handbook cannot answer: other topics, and aspects of covered topics it omits.
UNANSWERABLE: tuple[str, ...] = (
    "At what age should glaucoma screening start?",
    "What intraocular pressure needs treatment?",
    "How often should hearing be screened in older adults?",
    "What dose of aspirin is used after a heart attack?",
    "What is the blood pressure target in pregnancy?",
    "Which insulin regimen is used in type 1 diabetes?",
    "What eGFR contraindicates contrast CT?",
    "What is the target INR for a mechanical heart valve?",
    "How long should antibiotics be continued for pneumonia?",
    "What peak flow variability confirms asthma?",
    "What is the screening age for abdominal aortic aneurysm?",
    "At what age does cervical screening stop?",
    "Which vaccine schedule applies to hepatitis B?",
    "What is the maximum paracetamol dose per day?",
    "How is migraine prophylaxis chosen?",
    "What is the threshold for treating gestational diabetes?",
    "How often should children have their eyes tested?",
    "What potassium level needs emergency treatment?",
    "When should a statin be stopped in frail elderly people?",
    "What lactate target is used during resuscitation in children?",
    "What ferritin level indicates iron overload?",
    "Which TSH range is normal in pregnancy?",
    "What BMI qualifies for bariatric surgery?",
    "How long is nicotine replacement therapy continued?",
    "What is the recommended daily salt intake?",
    "At what age should prostate cancer screening begin?",
    "What is the latent tuberculosis treatment regimen?",
    "How is gout flare treated?",
    # added with the Chinese edition: more distinct questions per split, so that the share of
    # correct refusals is measured on more than a handful of them
    "Which antiviral is used for shingles?",
    "What dose of vitamin B12 corrects deficiency?",
    "How long is the isolation period after measles exposure?",
    "At what age is the first MMR vaccine dose given?",
    "What is the normal range of serum sodium?",
    "How often should a person with epilepsy have a driving review?",
    "Which inhaler device suits young children best?",
    "What PSA level prompts a biopsy?",
    "How is a urinary tract infection treated in pregnancy?",
    "What troponin rise confirms a heart attack?",
    "When is a knee replacement recommended?",
    "What is the first treatment for depression?",
    "How many units of alcohol a week are safe?",
    "Which blood test monitors lithium treatment?",
    "What is the dose of adrenaline for anaphylaxis?",
    "How often are diabetic feet examined?",
    "At what age should breast screening start?",
    "What cholesterol target applies to children?",
    "How long should warfarin be paused before surgery?",
    "What oxygen saturation target is used in COPD?",
)
_PREFIXES = (
    "",
    "According to the SHB handbook, ",
    "Quick check: ",
    "For a clinic audit: ",
    "In the synthetic guideline, ",
)


def _fmt(value: float, step: float, unit: str) -> str:
    text = f"{value:.1f}" if step < 1 else f"{int(round(value))}"
    return f"{text} {unit}" if unit != "%" else f"{text}%"


def build_passages(
    rng: np.random.Generator, values: dict[str, float] | None = None
) -> tuple[list[dict], dict[str, str]]:
    """The handbook for one seed: passages (with drawn values) and the answer of every fact.

    ``values``, if given, receives each fact's drawn number (for the Chinese edition)."""
    answers: dict[str, str] = {}
    sentences: dict[str, list[str]] = {p.id: [] for p in PASSAGES}
    for fact in FACTS:
        k = int(round((fact.high - fact.low) / fact.step))
        value = fact.low + fact.step * int(rng.integers(0, k + 1))
        if values is not None:
            values[f"{fact.passage}/{fact.slot}"] = value
        ans = _fmt(value, fact.step, fact.unit)
        answers[f"{fact.passage}/{fact.slot}"] = ans
        sentences[fact.passage].append(fact.sentence.replace("{v}", ans))
    passages = []
    for p in PASSAGES:
        body = sentences[p.id]
        order = rng.permutation(len(body))
        text = " ".join([p.opening, *(body[i] for i in order), p.closing])
        passages.append(
            {
                "id": p.id,
                "topic": p.topic,
                "title": p.title,
                "text": text,
                "synthetic": True,
                "source": SOURCE,
            }
        )
    return passages, answers


def _grid(fact: Fact) -> list[float]:
    k = int(round((fact.high - fact.low) / fact.step))
    return [fact.low + fact.step * i for i in range(k + 1)]


def build_passages_zh(
    rng: np.random.Generator, values: dict[str, float]
) -> tuple[list[dict], dict[str, str], dict[str, dict]]:
    """The Chinese edition for the drawn ``values``: passages (id ``<id>-zh``), the Chinese
    answer of every fact, and per fact its sentence in both editions and with every wrong
    value of its grid (for the recorded answers)."""
    answers: dict[str, str] = {}
    sentences: dict[str, list[str]] = {p.id: [] for p in PASSAGES}
    facts: dict[str, dict] = {}
    for fact in FACTS:
        key = f"{fact.passage}/{fact.slot}"
        unit_zh, sentence_zh, _ = _kb_zh.FACTS_ZH[key]
        value = values[key]
        ans = _kb_zh.fmt_zh(value, fact.step, unit_zh)
        answers[key] = ans
        sentences[fact.passage].append(sentence_zh.replace("{v}", ans))
        others = [v for v in _grid(fact) if abs(v - value) > 1e-9]
        facts[key] = {
            "unit": fact.unit,
            "en": fact.sentence.replace("{v}", _fmt(value, fact.step, fact.unit)),
            "zh": sentence_zh.replace("{v}", ans),
            "wrong": {
                "en": [fact.sentence.replace("{v}", _fmt(v, fact.step, fact.unit)) for v in others],
                "zh": [
                    sentence_zh.replace("{v}", _kb_zh.fmt_zh(v, fact.step, unit_zh)) for v in others
                ],
            },
        }
    passages = []
    for p in PASSAGES:
        title, opening, closing = _kb_zh.PASSAGES_ZH[p.id]
        body = sentences[p.id]
        order = rng.permutation(len(body))
        passages.append(
            {
                "id": f"{p.id}-zh",
                "topic": p.topic,
                "title": title,
                "text": "".join([opening, *(body[i] for i in order), closing]),
                "synthetic": True,
                "source": SOURCE_ZH,
            }
        )
    return passages, answers, facts


def _questions_zh(
    ctx: GenContext, answers_zh: dict[str, str], fact_test: np.ndarray
) -> dict[bool, list[dict]]:
    """Chinese questions for both splits (own random streams: the English ones are unchanged);
    a fact's Chinese questions are on the same side of the split as its English ones."""
    unans_test = _pick_exact(ctx.rng("split-zh"), len(_kb_zh.UNANSWERABLE_ZH))
    pools: dict[bool, list[tuple]] = {False: [], True: []}
    unpools: dict[bool, list[tuple]] = {False: [], True: []}
    for fact, is_test in zip(FACTS, fact_test, strict=True):
        key = f"{fact.passage}/{fact.slot}"
        for q in _kb_zh.FACTS_ZH[key][2]:
            for pre in _kb_zh.PREFIXES_ZH:
                pools[bool(is_test)].append((pre + q, answers_zh[key], f"{fact.passage}-zh", key))
    for q, is_test in zip(_kb_zh.UNANSWERABLE_ZH, unans_test, strict=True):
        for pre in _kb_zh.PREFIXES_ZH:
            unpools[bool(is_test)].append((pre + q, None, None, None))
    draw = ctx.rng("questions-zh")
    n_zh = int(round(ctx.n * ZH_PER_QUESTION))
    n_test = int(round(n_zh * TEST_FRACTION))
    out: dict[bool, list[dict]] = {}
    for is_test, m in ((False, n_zh - n_test), (True, n_test)):
        if is_test:  # which test-pool questions are asked, in what order: the hidden streams
            draw = ctx.hidden_rng("questions-zh", public=draw)
        n_ans = int(round(m * ANSWERABLE_SHARE))
        if n_ans > len(pools[is_test]) or m - n_ans > len(unpools[is_test]):
            raise ValueError(f"n={ctx.n} needs more distinct Chinese questions than there are")
        picks = [pools[is_test][i] for i in draw.choice(len(pools[is_test]), n_ans, replace=False)]
        picks += [
            unpools[is_test][i]
            for i in draw.choice(len(unpools[is_test]), m - n_ans, replace=False)
        ]
        out[is_test] = [
            {
                "question": picks[i][0],
                "lang": "zh",
                "answerable": picks[i][1] is not None,
                "answer": picks[i][1],
                "passage_id": picks[i][2],
                "fact": picks[i][3],
            }
            for i in draw.permutation(len(picks))
        ]
    return out


def _pick_exact(rng: np.random.Generator, n: int) -> np.ndarray:
    """Boolean mask marking exactly round(n * TEST_FRACTION) of n items as test."""
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[: int(round(n * TEST_FRACTION))]] = True
    return mask


def _write(ctx: GenContext) -> None:
    values: dict[str, float] = {}
    passages, answers = build_passages(ctx.rng("handbook"), values)
    passages_zh, answers_zh, facts_both = build_passages_zh(ctx.rng("handbook-zh"), values)
    split = ctx.rng("split")
    fact_test = _pick_exact(split, len(FACTS))
    unans_test = _pick_exact(split, len(UNANSWERABLE))
    # Every distinct question (fact x phrasing x prefix), per split.
    # (question, answer, passage id, fact id); the last three are None for unanswerable ones.
    Item = tuple[str, str | None, str | None, str | None]
    pools: dict[bool, list[Item]] = {False: [], True: []}
    unpools: dict[bool, list[Item]] = {False: [], True: []}
    for fact, is_test in zip(FACTS, fact_test, strict=True):
        for q in fact.questions:
            for pre in _PREFIXES:
                qq = pre + (q[0].lower() + q[1:] if pre else q)
                key = f"{fact.passage}/{fact.slot}"
                pools[bool(is_test)].append((qq, answers[key], fact.passage, key))
    for q, is_test in zip(UNANSWERABLE, unans_test, strict=True):
        for pre in _PREFIXES:
            unpools[bool(is_test)].append(
                (pre + (q[0].lower() + q[1:] if pre else q), None, None, None)
            )
    draw = ctx.rng("questions")
    n_test = int(round(ctx.n * TEST_FRACTION))
    out: dict[bool, list[dict]] = {}
    for is_test, m in ((False, ctx.n - n_test), (True, n_test)):
        if is_test:  # which test-pool questions are asked, in what order: the hidden streams
            draw = ctx.hidden_rng("questions", public=draw)
        n_ans = int(round(m * ANSWERABLE_SHARE))
        if n_ans > len(pools[is_test]) or m - n_ans > len(unpools[is_test]):
            raise ValueError(f"n={ctx.n} needs more distinct questions than the handbook has")
        picks = [pools[is_test][i] for i in draw.choice(len(pools[is_test]), n_ans, replace=False)]
        picks += [
            unpools[is_test][i]
            for i in draw.choice(len(unpools[is_test]), m - n_ans, replace=False)
        ]
        order = draw.permutation(len(picks))
        out[is_test] = [
            {
                "question": picks[i][0],
                "lang": "en",
                "answerable": picks[i][1] is not None,
                "answer": picks[i][1],
                "passage_id": picks[i][2],
                "fact": picks[i][3],
            }
            for i in order
        ]
    zh = _questions_zh(ctx, answers_zh, fact_test)
    train = [{"id": f"q-train-{j:05d}", **r} for j, r in enumerate(out[False])]
    test = [{"id": f"q-test-{j:05d}", **r} for j, r in enumerate(out[True])]
    train += [{"id": f"q-train-zh-{j:05d}", **r} for j, r in enumerate(zh[False])]
    test += [{"id": f"q-test-zh-{j:05d}", **r} for j, r in enumerate(zh[True])]
    answers_rng = ctx.rng("recorded-answers")
    recorded, recorded_scores = _kb_rubric.recorded_answers(
        answers_rng,
        train,
        facts_both,
        [p["id"] for p in passages + passages_zh],
        audit_rng=ctx.hidden_rng("recorded-answers-audit", public=answers_rng),
    )
    ctx.progress(ctx.n)
    write_jsonl(ctx.public_dir / "passages.jsonl", passages + passages_zh)
    write_jsonl(ctx.public_dir / "train_questions.jsonl", train)
    write_jsonl(
        ctx.public_dir / "test_questions.jsonl",
        ({"id": r["id"], "question": r["question"], "lang": r["lang"]} for r in test),
    )
    write_jsonl(ctx.hidden_dir / "test_answers.jsonl", test)
    write_jsonl(ctx.public_dir / "model_answers.jsonl", recorded)
    write_jsonl(ctx.hidden_dir / "model_answer_scores.jsonl", recorded_scores)


SPEC = DatasetSpec(
    name="kb",
    summary="synthetic guideline passages in English and Chinese (fictional values) with answerable "
    "and unanswerable questions, and recorded model answers with rubric scores",
    default_n=300,
    formats=("jsonl",),
    write=_write,
    unit="English questions (Chinese ones are added, 0.4 per English question)",
    max_n=500,  # bounded by the distinct questions of the train and test pools
    min_n=20,  # the recorded answers need training questions of every kind
)
