"""The course configuration: one YAML file, validated into a typed model.

It is the single source of truth for a training base: the course, its people (instructors, TAs,
trainees), its labs, compute profiles and datasets. The embedded hub, the helm values, the
gradebook roster and the site's "open in hub" links are all derived from it.

Every field carries a ``description``; ``medai config docs`` renders the reference from them and a
test fails when the committed reference drifts from the model.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# JupyterHub accepts many names, nbgrader forbids '+' and '*', and the names become directory
# names and Unix-like home folders, so keep to a conservative, lowercase set.
NAME_RE = r"^[a-z][a-z0-9._-]{0,31}$"
ID_RE = r"^[a-z][a-z0-9_-]{0,39}$"

UserName = Annotated[str, Field(pattern=NAME_RE)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Course(_Strict):
    """The course itself."""

    id: str = Field(
        pattern=ID_RE,
        description="Short identifier, used in URLs (`/services/<id>/`), the nbgrader course id "
        "and folder names. Lowercase letters, digits, `-` and `_`.",
    )
    title: str = Field(min_length=1, description="Human-readable title shown on the hub and site.")
    hub_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Public URL of the hub; the site builds its 'open in the hub' links from it.",
    )


class People(_Strict):
    """Who takes part, by role. A name may appear in one role only."""

    instructors: list[UserName] = Field(
        min_length=1,
        description="Can open the course formgrader, release labs, grade and export grades.",
    )
    tas: list[UserName] = Field(
        default_factory=list,
        description="Teaching assistants: same course rights as instructors (formgrader access).",
    )
    trainees: list[UserName] = Field(
        default_factory=list,
        description="Students: get their own sandboxed JupyterLab and the course's labs.",
    )

    @model_validator(mode="after")
    def _one_role_each(self) -> People:
        seen: dict[str, str] = {}
        for role in ("instructors", "tas", "trainees"):
            for name in getattr(self, role):
                if name in seen:
                    where = "twice in" if seen[name] == role else f"in both {seen[name]} and"
                    raise ValueError(f"user '{name}' is listed {where} {role}")
                seen[name] = role
        return self

    @property
    def staff(self) -> list[str]:
        return [*self.instructors, *self.tas]

    @property
    def everyone(self) -> list[str]:
        return [*self.instructors, *self.tas, *self.trainees]


class Lab(_Strict):
    """One lab: an nbgrader source folder under `labs/`."""

    id: str = Field(pattern=ID_RE, description="nbgrader assignment id, e.g. `m1-deid`.")
    title: str = Field(min_length=1, description="Title shown on the site.")
    source: str = Field(
        description="Folder of the nbgrader source notebook(s), relative to the repository "
        "(or to the config file), e.g. `labs/m1-deid`."
    )
    datasets: list[str] = Field(
        default_factory=list, description="Names of the datasets (below) the lab reads."
    )
    profile: str = Field(default="cpu", description="Name of the compute profile it needs.")
    release: bool = Field(default=True, description="Release it to trainees when the hub starts.")


class Profile(_Strict):
    """A compute profile trainees pick from when their server starts."""

    name: str = Field(pattern=ID_RE, description="Identifier, referenced by labs.")
    display_name: str = Field(description="Shown in the profile picker.")
    cpu_limit: float = Field(
        default=2.0,
        gt=0,
        description="CPU cores (a cgroup CPU quota on one machine, the pod limit on Kubernetes).",
    )
    mem_limit: str = Field(
        default="4G",
        pattern=r"^[0-9]+(\.[0-9]+)?[KMGT]i?$",
        description="Memory limit of the whole server with its kernels and /tmp, e.g. `4G`, `512M`.",
    )
    gpus: int = Field(
        default=0, ge=0, description="`nvidia.com/gpu` count on Kubernetes; 0 = CPU only."
    )
    max_processes: int = Field(
        default=512,
        ge=16,
        description="Most processes and threads the server may run at once (a fork bomb stops there).",
    )
    groups: list[Literal["instructors", "tas", "trainees"]] = Field(
        default_factory=lambda: ["instructors", "tas", "trainees"],
        description="Which roles may choose this profile.",
    )


class Dataset(_Strict):
    """A synthetic dataset prepared for the course (public split mounted read-only)."""

    name: str = Field(pattern=ID_RE, description="Generator name, see `medai data list`.")
    n: int | None = Field(default=None, gt=0, description="Size; the generator default if unset.")
    seed: int = Field(default=20261123, ge=0, description="Root seed: same seed, same bytes.")


class Servers(_Strict):
    """How servers start (a queue), stay warm (class sessions) and stop (idle culling)."""

    concurrent_starts: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Servers that may start at once; further logins wait in a queue and see "
        "their place in it (on 2 cores, 2 keeps the hub responsive).",
    )
    start_timeout_minutes: float = Field(
        default=10,
        gt=0,
        description="How long one login may wait for its server, the time in the queue "
        "included, before the hub gives up.",
    )
    class_session_hours: float = Field(
        default=3,
        gt=0,
        le=24,
        description="How long a class session opened with `medai class open` (or the class "
        "page) keeps its unused servers warm, unless it is closed earlier.",
    )
    class_memory_reserve_mb: int = Field(
        default=1024,
        ge=0,
        description="Memory a class session leaves free on the machine (hub, proxy, the "
        "trainees' kernels): it starts no further warm server below this.",
    )
    idle_server_minutes: float = Field(
        default=60,
        ge=0,
        description="A server nobody used for this long is stopped by the idle culler "
        "(jupyterhub-idle-culler); files stay in the home. 0: never.",
    )
    idle_kernel_minutes: float = Field(
        default=30,
        ge=0,
        description="A kernel idle for this long is shut down inside its server (its "
        "variables are lost, its notebook stays). 0: never.",
    )
    cull_connected_kernels: bool = Field(
        default=False,
        description="Also shut down idle kernels whose notebook is still open in a browser tab.",
    )


OutputKind = Literal["table", "regression", "dp_count", "dp_mean", "model"]


class ReleasePolicy(_Strict):
    """What may leave the data sandbox for one dataset (statistical disclosure control).

    The defaults follow the practice of trusted research environments: a minimum of 10
    contributors per cell, counts rounded to base 5, the n-k dominance rule (2 largest under
    90 %) and the p-ratio rule (10 %), no minima or maxima, no row-level output (see the data
    sandbox guide)."""

    min_cell: int = Field(
        default=10,
        ge=1,
        description="Threshold rule: a table cell, regression or subset counts at least this "
        "many patients, else it is suppressed (tables) or refused.",
    )
    rounding_base: int = Field(
        default=5, ge=1, description="Released counts are rounded to a multiple of this."
    )
    mean_decimals: int = Field(
        default=1,
        ge=0,
        le=6,
        description="Released means and coefficients keep this many decimals.",
    )
    nk_n: int = Field(
        default=2,
        ge=1,
        description="Dominance (n-k) rule: the n largest contributions to a cell ...",
    )
    nk_k: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="... contributions must be under this share of a cell's total.",
    )
    p_ratio: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="p-ratio rule: a cell's total minus its two largest contributions must be at "
        "least this share of the largest.",
    )
    max_cells: int = Field(
        default=60, ge=1, description="Most cells (or coefficients) one released output may have."
    )
    outputs: list[OutputKind] = Field(
        default_factory=lambda: ["table", "regression", "dp_count", "dp_mean", "model"],
        description="Kinds of output trainees may ask for; any other is refused.",
    )
    epsilon_budget: float = Field(
        default=2.0,
        ge=0,
        description="Differential-privacy budget (total epsilon) of one trainee on this dataset.",
    )
    max_jobs_per_hour: int = Field(
        default=30, ge=1, description="Rate limit: jobs one trainee may submit per hour."
    )
    job_seconds: float = Field(
        default=60, gt=0, le=3600, description="Wall-clock limit of one job in its sandbox."
    )
    mia_auc_max: float = Field(
        default=0.65,
        gt=0.5,
        le=1,
        description="Model release: the worst-case membership-inference attack (SACRO-ML) must "
        "score an AUC below this, else the model is held for the data owner.",
    )


class SandboxDataset(_Strict):
    """A private dataset trainees compute on without seeing it, and its public mock twin."""

    name: str = Field(pattern=ID_RE, description="Identifier, e.g. `cohort`.")
    title: str = Field(min_length=1, description="Shown in the catalogue.")
    generator: Literal["cohort"] = Field(
        default="cohort",
        description="What generates it: `cohort` (patients with risk factors and a stroke "
        "outcome), drawn from the deployment's data secret.",
    )
    n: int = Field(default=2000, ge=50, le=1_000_000, description="Patients in the private data.")
    mock_seed: int = Field(
        default=20261202,
        ge=0,
        description="Public seed of the mock twin (same schema, synthetic values, readable).",
    )
    owner: UserName = Field(
        description="The data owner: reviews held outputs and access requests (a course user)."
    )
    policy: ReleasePolicy = Field(
        default_factory=ReleasePolicy, description="Release rules (disclosure control)."
    )


class Sandbox(_Strict):
    """The data sandbox ("usable but invisible"): private datasets, reached only by jobs."""

    datasets: list[SandboxDataset] = Field(
        default_factory=list, description="Sandboxed datasets; none: no sandbox service."
    )
    timing_quantum_s: float = Field(
        default=0.5,
        ge=0,
        le=60,
        description="A job's result becomes visible only at a whole multiple of this many "
        "seconds after submission, so run time carries little information.",
    )


class CourseConfig(_Strict):
    """Top level of the course configuration file."""

    course: Course = Field(description="The course.")
    people: People = Field(description="Instructors, TAs and trainees.")
    labs: list[Lab] = Field(default_factory=list, description="Labs, in teaching order.")
    profiles: list[Profile] = Field(
        default_factory=lambda: [Profile(name="cpu", display_name="CPU (2 cores, 4 GB)")],
        min_length=1,
        description="Compute profiles.",
    )
    datasets: list[Dataset] = Field(default_factory=list, description="Datasets the labs use.")
    servers: Servers = Field(
        default_factory=Servers,
        description="Start queue, class sessions and culling of the trainees' servers.",
    )
    grading_policy: str | None = Field(
        default=None,
        description="Grading policy file (YAML; see the grading policy reference) used by the "
        "hub's grading service, relative to this file. Unset: the built-in defaults.",
    )
    sandbox: Sandbox = Field(
        default_factory=Sandbox,
        description="The data sandbox: private datasets, their mock twins and release rules.",
    )

    @field_validator("labs", "profiles", "datasets")
    @classmethod
    def _unique(cls, items: list, info) -> list:
        key = "name" if info.field_name != "labs" else "id"
        names = [getattr(i, key) for i in items]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate {key}(s) in {info.field_name}: {', '.join(dup)}")
        return items

    @model_validator(mode="after")
    def _references(self) -> CourseConfig:
        profiles = {p.name for p in self.profiles}
        datasets = {d.name for d in self.datasets}
        for i, lab in enumerate(self.labs):
            if lab.profile not in profiles:
                raise ValueError(
                    f"labs[{i}].profile: lab '{lab.id}' uses profile '{lab.profile}', which is "
                    f"not defined in profiles (have: {', '.join(sorted(profiles))})"
                )
            for d in lab.datasets:
                if d not in datasets:
                    raise ValueError(
                        f"labs[{i}].datasets: lab '{lab.id}' reads dataset '{d}', which is not "
                        f"listed in datasets (have: {', '.join(sorted(datasets)) or 'none'})"
                    )
        names = [d.name for d in self.sandbox.datasets]
        for i, d in enumerate(self.sandbox.datasets):
            if names.count(d.name) > 1:
                raise ValueError(f"sandbox.datasets[{i}].name: duplicate name '{d.name}'")
            if d.owner not in self.people.everyone:
                raise ValueError(
                    f"sandbox.datasets[{i}].owner: '{d.owner}' is not a course user; name one "
                    "of people.instructors, tas or trainees"
                )
            if d.owner in self.people.trainees:
                raise ValueError(
                    f"sandbox.datasets[{i}].owner: '{d.owner}' is a trainee; the data owner "
                    "must be an instructor or TA"
                )
        return self

    def role_of(self, user: str) -> str | None:
        for role in ("instructors", "tas", "trainees"):
            if user in getattr(self.people, role):
                return role
        return None


class ConfigError(Exception):
    """A course configuration that cannot be used; ``str()`` names file, key and reason."""

    def __init__(self, path: Path | str, problems: list[tuple[str, str]]):
        self.path = str(path)
        self.problems = problems
        lines = [f"{self.path}: invalid course configuration"]
        lines += [f"  {key}: {reason}" for key, reason in problems]
        super().__init__("\n".join(lines))


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def parse_config(data: object, path: Path | str = "<memory>") -> CourseConfig:
    """Validate already-loaded YAML data; raise :class:`ConfigError` with every problem found."""
    if not isinstance(data, dict):
        raise ConfigError(path, [("(top level)", "expected a mapping with a 'course:' key")])
    try:
        return CourseConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = re.sub(r"^(Value error|Assertion failed), ", "", err["msg"])
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling; see the course configuration reference)"
            key = _loc(err["loc"])
            # Cross-reference checks run on the whole model and name their key in the message.
            m = re.match(r"^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+(?:\[\d+\])?)*): (.*)$", msg, re.S)
            if key == "(top level)" and m:
                key, msg = m.group(1), m.group(2)
            problems.append((key, msg))
        raise ConfigError(path, problems) from None


def load_config(path: Path | str) -> CourseConfig:
    """Read and validate a course configuration file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(p, [("(file)", "no such file")]) from None
    except OSError as exc:
        raise ConfigError(p, [("(file)", f"cannot read: {exc.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError(p, [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    return parse_config(data, p)


# ---------------------------------------------------------------------------------------------
# Reference documentation, generated from the model (a test fails on drift).


REFERENCE_SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("(top level)", CourseConfig),
    ("course", Course),
    ("people", People),
    ("labs[]", Lab),
    ("profiles[]", Profile),
    ("datasets[]", Dataset),
    ("servers", Servers),
    ("sandbox", Sandbox),
    ("sandbox.datasets[]", SandboxDataset),
    ("sandbox.datasets[].policy", ReleasePolicy),
]


def render_reference() -> str:
    """Markdown reference of every key of the course configuration."""
    from medai.reference import render_models

    return render_models(
        "Course configuration reference",
        "medai/config.py",
        [
            "One YAML file describes a course: its people, labs, compute profiles and datasets.",
            "Check one with `medai config check PATH`. The demo course is "
            "`courses/demo-course.yaml`.",
        ],
        REFERENCE_SECTIONS,
        ["User names must match `" + NAME_RE + "`; ids must match `" + ID_RE + "`.", ""],
    )
