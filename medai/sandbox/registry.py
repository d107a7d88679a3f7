"""The sandboxed datasets of a course and where their files live.

Host side, below the state folder::

    datasandbox/                 mode 0700; bound into no trainee sandbox
      private/<name>/data.parquet   the private cohort -> /private (read-only) in its data jobs only
      jobs/<id>/                    one job's folder (its code, generated /etc files)
      audit.log                     the hash-chained audit log (medai.sandbox.audit)
      store.sqlite                  access grants, budgets, jobs, held outputs (medai.sandbox.store)
    data/public/sandbox-mock/<name>/mock.csv, card.md
                                 the mock twin -> /data/sandbox-mock in every trainee's server

:func:`sandboxed_datasets` is what the catalogue lists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from medai.config import CourseConfig, SandboxDataset
from medai.sandbox import cohort

MOCK_FOLDER = "sandbox-mock"  # below the public data root (MEDAI_DATA, /data in a server)


@dataclass(frozen=True)
class SandboxedDataset:
    """One sandboxed dataset as the catalogue shows it."""

    name: str
    title: str
    owner: str
    card: str  # Markdown
    schema: list[dict]
    mock_path: str  # relative to the public data root (MEDAI_DATA)
    policy: dict = field(default_factory=dict)  # the release rules, as plain data
    policy_summary: str = ""


def policy_summary(d: SandboxDataset) -> str:
    p = d.policy
    return (
        f"cells of at least {p.min_cell} patients, counts rounded to {p.rounding_base}, "
        f"means to {p.mean_decimals} decimal(s); dominance {p.nk_n} largest < {p.nk_k:.0%}, "
        f"p-ratio {p.p_ratio:.0%}; no row-level output, minima or maxima; "
        f"outputs: {', '.join(p.outputs)}; DP budget epsilon {p.epsilon_budget:g}; "
        f"{p.max_jobs_per_hour} jobs/hour"
    )


def card(d: SandboxDataset) -> str:
    lines = [
        f"# {d.title} (`{d.name}`, sandboxed)",
        "",
        f"A private cohort of {d.n} patients, kept by {d.owner}. Nobody reads its rows: "
        "analysis functions run on it in a sandbox and only outputs that pass disclosure "
        "control come back. Develop against the mock twin (same schema, synthetic values), "
        f"`$MEDAI_DATA/{MOCK_FOLDER}/{d.name}/mock.csv`, then submit with "
        "`medai.sandbox.client`.",
        "",
        "| column | type | role | description |",
        "|---|---|---|---|",
    ]
    for c in cohort.schema():
        vals = f" ({', '.join(c['values'])})" if "values" in c else ""
        lines.append(f"| `{c['name']}` | {c['type']} | {c['role']} | {c['description']}{vals} |")
    lines += ["", f"Release rules: {policy_summary(d)}.", ""]
    return "\n".join(lines)


def sandboxed_datasets(course: CourseConfig) -> list[SandboxedDataset]:
    """The course's sandboxed datasets: name, card, schema, mock path and policy."""
    return [
        SandboxedDataset(
            name=d.name,
            title=d.title,
            owner=d.owner,
            card=card(d),
            schema=cohort.schema(),
            mock_path=f"{MOCK_FOLDER}/{d.name}/mock.csv",
            policy=d.policy.model_dump(),
            policy_summary=policy_summary(d),
        )
        for d in course.sandbox.datasets
    ]


@dataclass(frozen=True)
class SandboxLayout:
    """Paths of the sandbox below a state folder."""

    state: Path

    @property
    def root(self) -> Path:
        return self.state / "datasandbox"

    def private_dir(self, name: str) -> Path:
        return self.root / "private" / name

    def private_file(self, name: str) -> Path:
        return self.private_dir(name) / "data.parquet"

    def mock_dir(self, name: str) -> Path:
        return self.state / "data" / "public" / MOCK_FOLDER / name

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.log"

    @property
    def store(self) -> Path:
        return self.root / "store.sqlite"

    @property
    def secret(self) -> Path:
        return self.state / "secrets" / "data.key"


def prepare(layout: SandboxLayout, d: SandboxDataset, secret: bytes) -> None:
    """Write the private cohort (if missing) and the mock twin with its card."""
    layout.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(layout.root, 0o700)
    priv = layout.private_file(d.name)
    if not priv.exists():
        priv.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = priv.with_suffix(".tmp")
        cohort.private_cohort(secret, d.n, name=d.name).to_parquet(tmp, index=False)
        os.chmod(tmp, 0o600)
        os.replace(tmp, priv)
    mock = layout.mock_dir(d.name)
    mock.mkdir(parents=True, exist_ok=True)
    tmp = mock / ".mock.csv.tmp"
    cohort.mock_cohort(d.mock_seed, min(d.n, 500), name=d.name).to_csv(tmp, index=False)
    os.replace(tmp, mock / "mock.csv")
    (mock / "card.md").write_text(card(d), encoding="utf-8")
