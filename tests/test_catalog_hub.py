"""The catalogue in a trainee's running server, attacked from her kernel.

The hub (``running_hub``) built the reference models and the catalogue page at its start. On
the host a sandboxed dataset is registered whose private rows (a canary) lie in the state
folder; alice's code then loads a model (the one thing she should be able to do), tries to
change, replace or add models by every path she has, and looks for the private rows.
"""

from __future__ import annotations

import hashlib
import json
import textwrap

import pytest

from medai.catalog.cards import AccessGrant, Column, SandboxedDataset
from medai.catalog.publish import write_page

pytestmark = pytest.mark.slow

CANARY = "CANARY-cohort-x-row-6e1d"


@pytest.fixture(scope="module")
def planted(running_hub):
    layout = running_hub.layout
    private = layout.root / "private-data" / "cohort-x" / "rows.csv"
    private.parent.mkdir(parents=True, exist_ok=True)
    private.write_text(f"age,ckd\n71,{CANARY}\n")
    entry = SandboxedDataset(
        name="cohort-x",
        title="Private CKD cohort",
        summary="Compute on it in the sandbox; read its mock twin.",
        columns=[Column(name="age", type="int"), Column(name="ckd", type="int")],
        mock_path="/data/cohort-x-mock",
        policy="counts of at least 10",
        access=[AccessGrant(user="bob", purpose="CKD by region")],
    )
    write_page(layout.catalog, running_hub.config, [entry])
    sums = {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(layout.models.rglob("*"))
        if p.is_file()
    }
    return {"private": str(private), "sums": sums}


def run_probe(alice, planted) -> dict:
    code = textwrap.dedent(
        f"""
        import json, os, shutil
        from pathlib import Path
        from medai.catalog import load_model
        from medai.catalog.reference import ehr_stroke_rows

        out = {{"env": os.environ.get("MEDAI_MODELS"), "wrote": [], "found": []}}
        rows = ehr_stroke_rows(Path(os.environ["MEDAI_DATA"]) / "ehr")
        model = load_model("stroke-risk-logistic")
        out["shape"] = list(model.predict_proba(rows.X.head(5)).shape)
        models = Path(os.environ["MEDAI_MODELS"])
        via_home = Path.home() / "catalog" / "models"
        card = models / "stroke-risk-logistic" / "card.json"
        attempts = {{
            "overwrite model": lambda: open(models / "stroke-risk-logistic" / "model.skops",
                                            "r+b").write(b"x"),
            "new file": lambda: open(models / "x.txt", "w").write("x"),
            "new model folder": lambda: os.mkdir(models / "evil"),
            "rename card": lambda: os.rename(card, card.with_name("old.json")),
            "delete card": lambda: os.unlink(card),
            "chmod": lambda: os.chmod(card, 0o666),
            "remove tree": lambda: shutil.rmtree(models / "stroke-risk-boosting"),
            "via ~/catalog": lambda: open(via_home / "stroke-risk-logistic" / "card.json",
                                          "w").write("{{}}"),
            "catalogue page": lambda: open(Path.home() / "catalog" / "README.md", "a").write("x"),
        }}
        for name, attempt in attempts.items():
            try:
                attempt()
                out["wrote"].append(name)
            except OSError:
                pass
        out["page"] = (Path.home() / "catalog" / "README.md").read_text()
        out["listing"] = sorted(os.listdir("/srv/medai/catalog"))
        marker = {CANARY[::-1]!r}[::-1].encode()  # reversed: the probe's own text is no hit
        for top in ("/srv/medai/catalog", "/data", "/srv", "/opt", "/mnt", "/media"):
            for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
                if "site-packages" in dirpath:
                    dirnames[:] = []
                    continue
                for f in filenames:
                    try:
                        if marker in open(os.path.join(dirpath, f), "rb").read():
                            out["found"].append(os.path.join(dirpath, f))
                    except OSError:
                        pass
        try:
            open({planted["private"]!r}).read()
            out["private_readable"] = True
        except OSError:
            out["private_readable"] = False
        print(json.dumps(out))
        """
    )
    res = alice.execute(code, timeout=180)
    assert res.error is None, res.error + res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def probe(alice, planted):
    return run_probe(alice, planted)


def test_trainee_loads_a_catalogue_model_in_her_kernel(probe):
    assert probe["env"] == "/srv/medai/catalog/models"
    assert probe["shape"] == [5, 2]
    assert probe["listing"] == ["README.md", "models"]


def test_trainee_cannot_change_replace_or_add_models(probe, planted):
    assert probe["wrote"] == []
    sums = {p: hashlib.sha256(open(p, "rb").read()).hexdigest() for p in planted["sums"]}
    assert sums == planted["sums"]


def test_catalogue_shows_the_mock_and_nothing_of_the_private_rows(probe, planted):
    page = probe["page"]
    assert "cohort-x" in page and "/data/cohort-x-mock" in page
    assert "bob" not in page  # trainees see how many have access, not who
    assert CANARY not in page and planted["private"] not in page
    assert probe["found"] == [] and probe["private_readable"] is False


def test_file_browser_lists_the_catalogue_and_cannot_save_into_it(alice):
    r = alice.api("GET", "/api/contents/catalog")
    assert r.status_code == 200, r.text
    assert {c["name"] for c in r.json()["content"]} == {"README.md", "models"}
    r = alice.api(
        "PUT",
        "/api/contents/catalog/models/new.txt",
        json={"type": "file", "format": "text", "content": "x"},
    )
    assert r.status_code >= 400
    assert alice.api("GET", "/api/contents/catalog/models/new.txt").status_code == 404
