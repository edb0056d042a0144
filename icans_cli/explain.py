"""`icans explain`: short teaching texts in the project's own words, each with its sources and
the evidence level of what it says. Claims the evidence file marks UNVERIFIED are said to be
unverified, never stated as fact."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    key: str
    title: str
    paragraphs: tuple[str, ...]
    sources: tuple[tuple[str, str], ...]  # (source, evidence level)


V, V2, R = "verified in a primary or reprinted source", "secondary source", "UNVERIFIED"

TOPICS: tuple[Topic, ...] = (
    Topic("ice", "The ICE score and the ASTCT grading tables", (
        "ICE (the Immune Effector Cell-Associated Encephalopathy score, ASTCT 2019) is a "
        "10-point bedside check for patients aged 12 and over: orientation to year, month, "
        "city and hospital (4), naming three objects (3), following a simple command (1), "
        "writing a standard sentence (1) and counting back from 100 by 10 (1). 10 means no "
        "impairment.",
        "ASTCT 2019 grades ICANS as the worst of five domains: ICE (10 = 0, 7-9 = 1, 3-6 = 2, "
        "0-2 = 3), level of consciousness (wakes spontaneously 1, to voice 2, only to touch 3, "
        "unarousable 4), seizure (rapidly resolving 3; prolonged over 5 min, or repeated "
        "without return to baseline in between, 4), "
        "motor (deep focal weakness 4) and raised ICP/edema (focal edema 3; diffuse edema, "
        "posturing, CN VI palsy, papilledema, Cushing's triad 4).",
        "Traps: ICE 10 alone is grade 0. ICE 0 in an awake patient with global aphasia is "
        "grade 3; grade 4 needs an unarousable patient, who cannot do the ICE at all. Tremor, "
        "myoclonus and intracranial haemorrhage are recorded but not graded. A finding with "
        "another cause (sedation) is not graded. Run `icans explain grading` for the table.",
    ), (("Lee et al., Biol Blood Marrow Transplant 2019;25:625 (ASTCT consensus)", V),
        ("ASCO 2021 (Santomasso, JCO 2021;39:3978), Table 2", V))),
    Topic("grading", "The ASTCT 2019 ICANS table, as the tool applies it", (
        "The tool prints the table from its own grading rules, so what you read here is what "
        "it computes.",
    ), (("Lee et al. 2019 (ASTCT consensus)", V),)),
    Topic("steroids", "Why corticosteroids for ICANS", (
        "ICANS is inflammation behind the blood-brain barrier, so a treatment has to get there. "
        "Dexamethasone and methylprednisolone are small, fat-soluble molecules that pass "
        "through cell membranes, where a large antibody cannot. The passage is not free: "
        "dexamethasone is a substrate of P-glycoprotein, the barrier's efflux pump, and mice "
        "lacking the pump take up more of it into the brain. So part of a dose reaches the "
        "brain, not all of it (and no ICANS-specific source measures how much).",
        "Inside cells, glucocorticoids damp the transcription of many inflammatory genes at "
        "once by interfering with NF-kB and AP-1, so they turn down IL-1 as well as IL-6, and "
        "they help tighten brain endothelium in laboratory studies. They are not uniformly "
        "anti-inflammatory in the brain, a reminder that the mechanism is not the whole story.",
        "ASCO 2021: moderate to severe ICANS is managed with corticosteroids.",
    ), (("De Bosscher 2000, J Neuroimmunol (NF-kB/AP-1)", V),
        ("Mason et al., Endocrinology 2008;149:5244 (P-glycoprotein and dexamethasone brain "
         "uptake, PMC2629618)", V),
        ("Cell Tissue Res 2014 review; in vitro dexamethasone studies (barrier tightening)", V),
        ("Dinkel 2003 (glucocorticoid paradox in the CNS)", V),
        ("ASCO 2021 (Santomasso, JCO 2021;39:3978)", V))),
    Topic("tocilizumab", "Why not tocilizumab for ICANS without CRS", (
        "Tocilizumab blocks the IL-6 receptor. It is an IgG antibody, and antibodies given into "
        "a vein reach the spinal fluid at only about 0.1-0.2% of their blood level in animal "
        "studies. (Its exact molecular mass, often quoted near 150 kDa, was not confirmed in "
        "the evidence read for this tool.)",
        "Blocking the receptor raises IL-6 in the blood, because the receptor is how IL-6 is "
        "cleared. Experts suspect this IL-6 reaches the brain where the drug does not follow; "
        "that is opinion, fitting the data, not a measurement.",
        "It has not worked for isolated neurotoxicity, and given prophylactically (ZUMA-1 "
        "cohort 3) it came with more grade 3 or worse neurological events: 41% against 28%. "
        "Size is not everything: anakinra also reaches spinal fluid poorly (0.28%), yet it is "
        "an option when ICANS resists steroids.",
        "With concurrent CRS, tocilizumab is there for the CRS. Without CRS it has no place.",
    ), (("Fluids Barriers CNS 2018 (antibody CSF/serum ratio)", V),
        ("Nishimoto, Blood 2008;112:3959 (serum IL-6 rises)", V),
        ("OncLive expert panel (IL-6 reaching the CNS: opinion)", V),
        ("Review PMC10329188 (ZUMA-1 cohorts)", V),
        ("J Neuroimmunol 2010 (anakinra CSF 0.28%)", V))),
    Topic("tradeoff", "The CAR-T trade-off and the taper", (
        "Corticosteroids act on the same transcription factors (NF-kB, AP-1) that CAR-T cells "
        "need to multiply and kill. After axi-cel, higher cumulative, prolonged and early "
        "steroid exposure went with shorter progression-free and overall survival in one "
        "cohort of 100 patients; a systematic review of 8 axi-cel studies mostly found no "
        "effect on efficacy; and ZUMA-1 cohorts given steroids earlier (cohort 4) or "
        "prophylactically (cohort 6) had less severe neurotoxicity (17% and 13-15% against "
        "28%). The evidence points both ways.",
        "Hence: the lowest dose that works, for the shortest time. Taper rapidly once ICANS is "
        "grade 1, but watch: ICANS flares have been reported with rapid tapers.",
    ), (("Strati, Blood 2021;137:3272", V), ("Sun, Front Immunol 2021 (systematic review)", V),
        ("Review PMC10329188 (ZUMA-1 cohorts 4 and 6)", V),
        ("ASCO 2021 (taper and flares)", V))),
    Topic("bbb", "The blood-brain barrier and its blood markers", (
        "Severe neurotoxicity after CAR-T goes with endothelial activation and a leaky "
        "blood-brain barrier; in one study endothelial activation before treatment predicted "
        "high-grade neurotoxicity, and CRS preceded every case of grade 3 or worse.",
        "Angiopoietin-2 and von Willebrand factor rise in severe CRS and are already raised "
        "before lymphodepletion in some patients. The often-quoted Ang-2/Ang-1 ratio detail was "
        "recalled, not read in a source: UNVERIFIED. In a mouse model, leukocytes plug "
        "capillaries and soluble ICAM-1 and VCAM-1 rise. The claim that isolated ICANS shows "
        "normal IL-6 with raised Ang-2 and sVCAM-1 was not found: UNVERIFIED, so not taught "
        "here as fact.",
        "A simple way to think about it: the flux of a molecule across a barrier is "
        "proportional to the barrier's permeability times the concentration difference "
        "(J proportional to P x delta C). Systemic inflammation raises both: more cytokine in "
        "the blood, and a leakier wall.",
        "A pre-treatment EASIX score above 4.67 gave 4.3-fold odds of severe CRS or ICANS in "
        "one cohort.",
    ), (("Gust, Cancer Discov 2017;7:1404", V), ("Hay, Blood 2017;130:2295", V),
        ("Gust 2022 mouse model (PMC8833245)", V), ("Korell, Front Immunol 2022 (EASIX)", V))),
    Topic("qalb", "Q_alb and K_trans: measuring the leak", (
        "Q_alb is CSF albumin divided by serum albumin. Albumin is made only in the blood, so "
        "a higher quotient means a leakier blood-CSF barrier. In children and adults with "
        "B-ALL, barrier disruption tracked neurotoxicity grade independent of CSF cells.",
        "Reference limits disagree: Hegen 2016 gives an upper limit of age/25 + 8 (x10^-3); "
        "Castellazzi 2020 uses 6.5 under 40, 8.0 at 40-60 and 9.0 over 60, about 2.2 higher "
        "in men; a textbook table gives 4-5 (ages 1-15), 5-8 (15-60) and 8-10 (60-90); "
        "Reiber's 4 + age/15 was recalled, not verified. This tool names Hegen 2016 when it "
        "computes: icans explain qalb --csf-albumin MG_L --serum-albumin G_L --age YEARS.",
        "K_trans, from dynamic contrast MRI, measures leakage of contrast from brain "
        "capillaries, but values vary widely with the method, and no ICANS-specific K_trans "
        "data were found. Both are context and research markers, not part of ASTCT grading.",
    ), (("Santomasso, Cancer Discov 2018;8:958 (blood-CSF barrier)", V),
        ("Hegen, Clin Chem Lab Med 2016", V), ("Castellazzi 2020", V),
        ("Heye 2014 systematic review (K_trans)", V), ("Reiber formula", R))),
    Topic("il1", "IL-1 against IL-6", (
        "CRS is driven largely by IL-6 in the blood, which is why tocilizumab works there. The "
        "brain tells a different story: CSF IL-6, IL-8, MCP-1 and IP-10 are disproportionately "
        "high in neurotoxicity, suggesting production inside the CNS, and the barrier is "
        "leaky.",
        "Animal models point to IL-1 from myeloid cells and microglia as a driver of "
        "neuroinflammation, which is the rationale for anakinra, an IL-1 receptor antagonist "
        "listed by ASCO for steroid-refractory ICANS. That IL-1 is the primary culprit in "
        "human ICANS was not verified in the sources read for this tool: treat it as a "
        "hypothesis.",
    ), (("Santomasso, Cancer Discov 2018 (CSF cytokines)", V),
        ("ASCO 2021 (refractory options incl. anakinra)", V),
        ("IL-1 as the primary driver in human ICANS", R))),
    Topic("circuits", "Which circuits give which symptoms", (
        "ICANS is not one lesion. By general neuroanatomy, inflammation of the perisylvian "
        "language network shows as aphasia (word-finding trouble, then inability to name, "
        "write or follow commands), which is why ICE leans on naming and writing; basal "
        "ganglia and cerebellar circuits show as tremor, rigidity and other parkinsonian "
        "signs.",
        "Delayed movement disorders with parkinsonism after BCMA products such as cilta-cel "
        "are described as a separate entity; the details were recalled, not verified here. "
        "This topic is general neurology, not a finding of the sources read.",
    ), (("General neuroanatomy (no ICANS-specific source read)", R),
        ("Delayed parkinsonism after cilta-cel", R))),
    Topic("isolated", "Isolated ICANS: neurotoxicity without CRS", (
        "ICANS usually follows CRS, but not always. With cilta-cel, the label says ICANS can "
        "occur before CRS, with it, after it resolves, or with no CRS at all. The tool never "
        "assumes that ICANS follows CRS.",
        "Without CRS, tocilizumab has no place: it does not treat isolated neurotoxicity and "
        "may worsen it. Corticosteroids are the treatment, dosed by grade: at grade 1 isolated "
        "ICANS gets supportive care, not steroids, except with the high-neurotoxicity products "
        "axi-cel and brexu-cel, for which ASCO allows them from grade 1; at grade 2 ASCO "
        "keeps them for high-risk products or patients; from grade 3 everyone gets them.",
        "After tocilizumab or steroids for CRS, the fever can be masked: with hypotension or "
        "hypoxia the patient still has CRS and belongs on the CRS branch. With neither, no "
        "ASTCT grade is met: the CRS is controlled after treatment, and the neurotoxicity is "
        "managed as isolated ICANS, without more tocilizumab.",
    ), (("Carvykti (cilta-cel) FDA label", V), ("Review PMC10329188", V),
        ("ASCO 2021 (grade 1-2 steroids by product and risk)", V),
        ("SITC 2020 CRS table (fever after treatment)", V))),
    Topic("capd", "CAPD in children", (
        "The Cornell Assessment of Pediatric Delirium has eight nurse-observed items scored "
        "0-4. Items 1-4 (eye contact, purposeful actions, awareness, communicating needs) "
        "score backwards (Never 4 ... Always 0); items 5-8 (restless, inconsolable, "
        "underactive, slow to respond) forwards. A total of 9 or more suggests delirium.",
        "Validated in 111 PICU patients aged 0-21: sensitivity 94%, specificity 79%, "
        "interrater kappa 0.94 at the cut point of 9.",
        "ASTCT uses CAPD under 12 and for patients 12 and over with developmental delay. CAPD "
        "1-8 fits grades 1 and 2 (which differ only by consciousness); 9 or more is grade 3; "
        "unable to perform is grade 4. Lee 2019 puts age 12 on the ICE side; the NCI "
        "Thesaurus puts it on the CAPD side: the tool follows Lee 2019 and says so.",
        "For children of 2 and under, judge each item against developmental anchor points "
        "(at 1-2 years, eye contact means holding gaze, preferring the main parent, looking at "
        "the speaker). Young or developmentally delayed children can score above 0 at "
        "baseline, so grade the change from a documented pre-infusion baseline (a reasoned "
        "point, not stated by the sources).",
    ), (("Traube, Crit Care Med 2014;42:656", V), ("Silver, Palliat Support Care 2015", V),
        ("Lee 2019 via MDedge summary", V2), ("ASCO 2021 (CAPD >= 9, age > 12 with delay)", V),
        ("NCI Thesaurus C188936", V))),
)


def topic(key: str) -> Topic:
    for t in TOPICS:
        if t.key == key:
            return t
    raise KeyError(key)


def find_topic(name: str) -> tuple[Topic | None, str | None]:
    """The topic whatever the case; otherwise (None, the closest key, if any is close)."""
    import difflib

    key = name.strip().lower()
    for t in TOPICS:
        if t.key == key:
            return t, None
    close = difflib.get_close_matches(key, [t.key for t in TOPICS], n=1, cutoff=0.6)
    return None, close[0] if close else None


def render(con, tp, q, csf_albumin, serum_albumin, age) -> None:
    """A topic (or the list of topics) with its sources, and a Q_alb result when given."""
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    if tp is None:
        t = Table(title="icans explain TOPIC", title_justify="left")
        t.add_column("topic")
        t.add_column("what it covers")
        for x in TOPICS:
            t.add_row(x.key, x.title)
        con.print(t)
        return
    body = Text("\n\n".join(tp.paragraphs))
    con.print(Panel(body, title=tp.title, expand=True))
    if tp.key == "grading":
        con.print(grading_table(con.width))
    src = Table(title="Sources", title_justify="left", show_header=True)
    src.add_column("source", ratio=1)
    src.add_column("evidence")
    for name, level in tp.sources:
        src.add_row(name, Text(level, style="yellow" if level == "UNVERIFIED" else ""))
    con.print(src)
    if q is not None:
        from icans_cli.core.qalb import LIMIT_NAME

        verdict = ("ABOVE the limit: consistent with blood-CSF barrier dysfunction"
                   if q.above else "within the limit")
        con.print(Text.assemble(
            ("Q_alb = ", "bold"), f"{csf_albumin:g} mg/L / {serum_albumin:g} g/L = ",
            (f"{q.qalb_e3:.2f} x10^-3", "bold"),
            f"; upper reference limit at age {age:g}: {q.limit_e3:.2f} x10^-3 ({LIMIT_NAME}). ",
            (verdict + ".", "bold red" if q.above else "bold green"),
            ("\nContext only: Q_alb is not part of ASTCT ICANS grading.", "italic")))


def grading_table(width: int = 120):
    """The ASTCT table from the grading rules themselves: domains by grade when there is room,
    else one block per grade, so no cell is cut at 80 columns."""
    from rich.table import Table

    from icans_cli.core.grading import CONSCIOUSNESS, ICP_EDEMA, MOTOR, SEIZURE, ice_domain_grade

    rows: list[tuple[str, list[str]]] = []

    def row(name, table):
        cells = ["-"] * 5
        for value, (g, desc) in table.items():
            cells[g] = desc if cells[g] == "-" else cells[g] + "; " + desc
        rows.append((name, cells))

    ice = []
    for g in range(4):
        scores = [s for s in range(11) if ice_domain_grade(s) == g]
        ice.append(str(scores[0]) if len(scores) == 1 else f"{scores[0]}-{scores[-1]}")
    ice.append("not performed: unarousable")
    rows.append(("ICE (12 and over)", ice))
    rows.append(("CAPD (under 12)", ["0", "1-8", "1-8 (and awakens to voice)", "9 or more",
                                     "not performed: unarousable"]))
    row("consciousness", CONSCIOUSNESS)
    row("seizure", SEIZURE)
    row("motor", MOTOR)
    row("ICP / edema", {"none": (0, "none"), **ICP_EDEMA})
    title = "ASTCT 2019 ICANS grading (from the tool's own rules)"
    if width >= 140:
        t = Table(title=title, title_justify="left")
        t.add_column("domain")
        for g in range(5):
            t.add_column(f"grade {g}")
        for name, cells in rows:
            t.add_row(name, *cells)
        return t
    t = Table(title=title, title_justify="left", show_header=True)
    t.add_column("grade", no_wrap=True)
    t.add_column("domain", no_wrap=True)
    t.add_column("finding", ratio=1)
    for g in range(5):
        first = True
        for name, cells in rows:
            if cells[g] != "-":
                t.add_row(f"grade {g}" if first else "", name, cells[g],
                          end_section=False)
                first = False
        t.add_section()
    return t
