"""ddpm.decisions.check and ddpm.decisions.provenance on tiny, self-made config.py files and ADRs (no torch, no training)."""

import json
import re
import textwrap
from pathlib import Path

import pytest

from ddpm.decisions import check as decisions
from ddpm.decisions import provenance
from ddpm.decisions.adr import parse_decision_line
from ddpm.decisions.check import MISSING, check, diff, main, newest_accepted, read_config, replay

README = """# Decisions

Prose about the format.

<!-- adr-index:start -->
<!-- adr-index:end -->

Trailing prose.
"""


def adr_text(number, title, status="Accepted", lines=(), date="2026-11-23", extra_decision=""):
    body = "\n".join(lines)
    return (
        f"# {number:04d}: {title}\n\nDate: {date}\n\n## Status\n\n{status}\n\n## Context\n\nWhy.\n\n"
        f"## Decision\n\nWhat we do.\n\n{body}\n{extra_decision}\n## Alternatives Considered\n\nOthers.\n\n"
        "## Consequences\n\n**Positive:** good.\n\n**Negative:** bad.\n"
    )


class Repo:
    """A tmp repo: config.py + decisions/ with README.md, template.md and ADRs."""

    def __init__(self, root: Path):
        self.root = root
        self.config = root / "config.py"
        self.dir = root / "decisions"
        self.dir.mkdir()
        (self.dir / "README.md").write_text(README)
        real_template = Path(__file__).resolve().parents[1] / "decisions" / "template.md"
        if real_template.exists():
            (self.dir / "template.md").write_text(real_template.read_text())

    def write_config(self, text):
        self.config.write_text(textwrap.dedent(text))

    def add(self, number, title, status="Accepted", lines=(), slug=None, **kw):
        slug = slug or re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        path = self.dir / f"{number:04d}-{slug}.md"
        path.write_text(adr_text(number, title, status, lines, **kw))
        return path

    def check(self, index=True):
        if index:
            decisions.update_index(self.dir)
        return check(self.config, self.dir)

    def cli(self, *args):
        return main([*args, "--config", str(self.config), "--dir", str(self.dir)])


@pytest.fixture
def repo(tmp_path):
    r = Repo(tmp_path)
    r.write_config(
        """\
        \"\"\"Docstring.\"\"\"
        LEARNING_RATE = 0.001  # peak lr (ADR 0002)
        CHANNEL_MULTS = (1, 2, 2)  # per level (ADR 0002)
        OPEN_CLIP_MODEL = "ViT-B-32"  # name (ADR 0003)
        lowercase_helper = 3
        """
    )
    r.add(1, "Record config decisions as ADRs")
    r.add(
        2,
        "Start the UNet",
        lines=[
            "- LEARNING_RATE: (new) → 1e-3 (a common default (for AdamW) → fine)",
            "- CHANNEL_MULTS: (new) -> (1, 2, 2)",
        ],
    )
    r.add(3, "Text tower", lines=['- OPEN_CLIP_MODEL: (new) → "ViT-B-32"'])
    return r


def errors_matching(errors, *needles):
    return [e for e in errors if all(n in e for n in needles)]


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "rest, old, new, reason",
    [
        (" 5e-6 → 5e-5 (10x for plateau breaking)", 5e-6, 5e-5, "10x for plateau breaking"),
        (" 5e-6 -> 5e-5", 5e-6, 5e-5, None),
        (" (new) → (16, 8)", decisions.NEW, (16, 8), None),
        (
            " (8,) → (16, 8) (attention at 16 (and 8) → more context)",
            (8,),
            (16, 8),
            "attention at 16 (and 8) → more context",
        ),
        (' "ViT-B-32" → "ViT-B 16 -> x" (a name with spaces)', "ViT-B-32", "ViT-B 16 -> x", "a name with spaces"),
        (' "a->b" -> "c (d)"', "a->b", "c (d)", None),
        (" True → False", True, False, None),
        (" 3 → (removed) (no longer used)", 3, decisions.REMOVED, "no longer used"),
    ],
)
def test_parse_decision_line(rest, old, new, reason):
    got_old, got_new, got_reason = parse_decision_line(rest)
    assert decisions.same(got_old, old) or got_old == old
    assert decisions.same(got_new, new) or got_new == new
    assert got_reason == reason


@pytest.mark.parametrize("rest", [" 1 2", " 1 → ", " foo → 2", " 1 → 2 trailing words", " → 2"])
def test_parse_decision_line_rejects(rest):
    with pytest.raises(ValueError):
        parse_decision_line(rest)


def test_same_is_type_aware():
    assert decisions.same(0.001, 1e-3)
    assert not decisions.same(1, 1.0)
    assert not decisions.same((16, 8), [16, 8])
    assert not decisions.same(True, 1)
    assert decisions.same((1, (2, "a")), (1, (2, "a")))


def test_read_config_uses_ast_only(tmp_path):
    cfg = tmp_path / "config.py"
    cfg.write_text('import os\nos.exit(3)\nA = 1\nB: float = 2.0\nC = A + 1\nlower = 4\nD = (1, "x")\n')
    assert read_config(cfg) == {"A": 1, "B": 2.0, "D": (1, "x")}


def test_decisions_module_does_not_import_config():
    for mod in ("check", "replay", "provenance", "runs"):
        src = (Path(__file__).resolve().parents[1] / "ddpm" / "decisions" / f"{mod}.py").read_text()
        assert not re.search(r"^\s*(import config|from config import)", src, re.M), mod


def test_html_comments_are_not_decisions(repo):
    repo.add(4, "Commented", lines=[], extra_decision="<!--\n- LEARNING_RATE: old → new\n-->\n")
    assert repo.check() == []


# ---------------------------------------------------------------- replay and check


def test_clean_repo_passes(repo, capsys):
    decisions.update_index(repo.dir)
    assert check(repo.config, repo.dir) == []
    values, origin = replay(repo.dir)
    assert values == {"LEARNING_RATE": 0.001, "CHANNEL_MULTS": (1, 2, 2), "OPEN_CLIP_MODEL": "ViT-B-32"}
    assert origin == {"LEARNING_RATE": 2, "CHANNEL_MULTS": 2, "OPEN_CLIP_MODEL": 3}
    assert diff(repo.config, repo.dir) == {}
    assert repo.cli("check") == 0
    out = capsys.readouterr().out
    assert out.startswith("decisions OK") and out.count("\n") == 1 and "0003 Text tower" in out


def test_stale_old_value(repo):
    repo.add(4, "Lower lr", lines=["- LEARNING_RATE: 0.01 → 0.0005"])
    repo.write_config(repo.config.read_text().replace("0.001 ", "0.0005 "))
    errs = repo.check()
    [e] = errors_matching(errs, "stale ADR 0004", "LEARNING_RATE", "0.01", "0.001", "0004-lower-lr.md:")
    assert "ADR 0002" in e
    assert len(errs) == 1  # the final state still matches config.py


def test_stale_new_for_existing_constant(repo):
    repo.add(4, "Again", lines=["- LEARNING_RATE: (new) → 0.001"])
    errs = repo.check()
    assert errors_matching(errs, "stale ADR 0004", "LEARNING_RATE", "already exists")


def test_old_value_for_never_introduced_constant(repo):
    repo.add(4, "Ghost", lines=["- GHOST: 1 → 2"])
    errs = repo.check()
    assert errors_matching(errs, "stale ADR 0004", "GHOST", "no earlier ADR introduces")


def test_config_differs_from_decisions(repo):
    repo.write_config(repo.config.read_text().replace("0.001 ", "0.002 "))
    errs = repo.check()
    [e] = errs
    assert "config.py:2:" in e and "LEARNING_RATE = 0.002" in e and "ADR 0002 decided LEARNING_RATE = 0.001" in e
    assert 'make adr TITLE="' in e and "restore LEARNING_RATE = 0.001" in e


def test_type_difference_is_reported(repo):
    repo.write_config(repo.config.read_text().replace("(1, 2, 2)", "[1, 2, 2]"))
    assert errors_matching(repo.check(), "CHANNEL_MULTS = [1, 2, 2]", "decided CHANNEL_MULTS = (1, 2, 2)")
    repo.write_config(repo.config.read_text().replace("[1, 2, 2]", "(1, 2, 2)").replace("0.001 ", "1 "))
    assert errors_matching(repo.check(), "LEARNING_RATE = 1 ", "LEARNING_RATE = 0.001")


def test_constant_not_introduced(repo):
    repo.write_config(repo.config.read_text() + "BATCH_SIZE = 64  # no ADR\n")
    [e] = repo.check()
    assert "BATCH_SIZE = 64 is not introduced" in e and "config.py:6:" in e and "(new) → 64" in e


def test_decided_constant_missing_from_config(repo):
    repo.write_config(repo.config.read_text().replace('OPEN_CLIP_MODEL = "ViT-B-32"  # name (ADR 0003)\n', ""))
    [e] = repo.check()
    assert "OPEN_CLIP_MODEL" in e and "ADR 0003" in e and "missing from config.py" in e
    assert 'restore OPEN_CLIP_MODEL = "ViT-B-32"' in e


def test_removed_constant(repo):
    repo.add(4, "Drop the tower name", lines=['- OPEN_CLIP_MODEL: "ViT-B-32" → (removed) (unused)'])
    repo.write_config(repo.config.read_text().replace('OPEN_CLIP_MODEL = "ViT-B-32"  # name (ADR 0003)\n', ""))
    assert repo.check() == []
    assert "OPEN_CLIP_MODEL" not in replay(repo.dir)[0]


def test_proposed_already_applied(repo):
    path = repo.add(4, "Raise lr", status="Proposed", lines=["- LEARNING_RATE: 0.001 → 0.002"])
    repo.write_config(repo.config.read_text().replace("0.001 ", "0.002 "))
    errs = repo.check()
    [e] = errors_matching(errs, "0004-raise-lr.md:7:", "Proposed", "mark it Accepted")
    # config differs from the Accepted decisions too
    assert errors_matching(errs, "LEARNING_RATE = 0.002", "ADR 0002")
    path.write_text(path.read_text().replace("\nProposed\n", "\nAccepted\n"))
    assert repo.check() == []


def test_proposed_not_applied_is_fine_and_rejected_does_not_count(repo):
    repo.add(4, "Maybe", status="Proposed", lines=["- LEARNING_RATE: 0.001 → 0.002"])
    repo.add(5, "No", status="Rejected", lines=["- LEARNING_RATE: 0.001 → 0.1"])
    assert repo.check() == []
    assert replay(repo.dir)[0]["LEARNING_RATE"] == 0.001


def test_superseded_still_counts(repo):
    repo.add(4, "Raise lr", status="Superseded by 0005", lines=["- LEARNING_RATE: 0.001 → 0.002"])
    repo.add(5, "Raise lr less", lines=["- LEARNING_RATE: 0.002 → 0.0015"])
    repo.write_config(repo.config.read_text().replace("0.001 ", "0.0015 "))
    assert repo.check() == []
    assert replay(repo.dir)[1]["LEARNING_RATE"] == 5


def test_duplicate_number(repo):
    repo.add(3, "Another three", slug="another-three")
    errs = repo.check()
    assert errors_matching(errs, "duplicate ADR number 0003", ".md:1:")


def test_missing_number(repo):
    repo.add(6, "Six")
    errs = repo.check()
    assert errors_matching(errs, "missing ADR number(s) 0004, 0005")


def test_malformed_decision_line(repo):
    repo.add(4, "Bad", lines=["- LEARNING_RATE: 0.001 to 0.002"])
    errs = repo.check()
    [e] = errors_matching(errs, "0004-bad.md:", "malformed decision line for LEARNING_RATE")
    lineno = int(e.split(".md:")[1].split(":")[0])
    assert "LEARNING_RATE: 0.001 to 0.002" in (repo.dir / "0004-bad.md").read_text().splitlines()[lineno - 1]


def test_unknown_status(repo):
    repo.add(4, "Odd", status="Deprecated")
    errs = repo.check()
    assert errors_matching(errs, "0004-odd.md:7:", "unknown status 'Deprecated'")


def test_dangling_supersede_link(repo):
    repo.add(4, "Old", status="Superseded by 0009")
    errs = repo.check()
    assert errors_matching(errs, "0004-old.md:7:", "Superseded by 0009", "does not exist")


def test_bad_file_name(repo):
    (repo.dir / "4-Bad_Name.md").write_text(adr_text(4, "Bad name"))
    (repo.dir / "notes.txt").write_text("not an ADR")
    errs = repo.check()
    [e] = errors_matching(errs, "4-Bad_Name.md:1:", "NNNN-kebab-title.md")
    assert len(errs) == 1


def test_header_and_date_errors(repo):
    p = repo.add(4, "Fine")
    p.write_text(p.read_text().replace("# 0004: Fine", "# 0005: Fine").replace("Date: 2026-11-23", "Date: soon"))
    errs = repo.check()
    assert errors_matching(errs, "0004-fine.md:1:", "file name says 0004")
    assert errors_matching(errs, "0004-fine.md:3:", "Date must be YYYY-MM-DD")


def test_missing_sections_and_fenced_examples(repo):
    p = repo.add(4, "Short", extra_decision="```\n- LEARNING_RATE: this is only an example\n```\n")
    assert repo.check() == []
    p.write_text(p.read_text().replace("## Alternatives Considered", "## Alternatives"))
    errs = repo.check()
    assert errors_matching(errs, "0004-short.md:1:", "missing `## Alternatives Considered` section")
    assert len(errs) == 1


def test_stale_index_and_fix(repo, capsys):
    errs = check(repo.config, repo.dir)
    assert errors_matching(errs, "README.md", "index is stale: run make decisions")
    assert repo.cli("check") == 1
    assert "index is stale" in capsys.readouterr().err
    assert repo.cli("check", "--fix-index") == 0
    assert check(repo.config, repo.dir) == []
    repo.add(4, "New one")
    assert errors_matching(check(repo.config, repo.dir), "index is stale")
    assert repo.cli("index") == 0
    assert check(repo.config, repo.dir) == []


def test_index_content(repo):
    repo.add(4, "Pipe | title", status="Superseded by 0005", lines=["- LEARNING_RATE: 0.001 → 0.002"])
    repo.add(5, "Back", lines=["- LEARNING_RATE: 0.002 → 0.001"])
    assert decisions.update_index(repo.dir) is True
    assert decisions.update_index(repo.dir) is False
    text = (repo.dir / "README.md").read_text()
    assert text.startswith("# Decisions\n\nProse about the format.\n") and text.endswith("\nTrailing prose.\n")
    table = text.split("<!-- adr-index:start -->\n")[1].split("\n<!-- adr-index:end -->")[0].splitlines()
    assert len(table) == 2 + 5
    assert (
        table[3]
        == "| [0002](0002-start-the-unet.md) | Start the UNet | Accepted | 2026-11-23 | `LEARNING_RATE`, `CHANNEL_MULTS` |"
    )
    assert table[5].startswith("| [0004](0004-pipe-title.md) | Pipe \\| title | Superseded by 0005 |")
    assert table[2].endswith("| — |")


def test_the_index_shows_an_adrs_finding_line_in_place_of_its_title(repo):
    path = repo.add(4, "Try a thing", lines=["- LEARNING_RATE: 0.001 → 0.002"])
    text = path.read_text().replace(
        "## Context", "## Finding\n\n<!-- guidance -->\nIt helps on 5 of 5\nseeds.\n\nA second paragraph.\n\n## Context"
    )
    path.write_text(text)
    decisions.update_index(repo.dir)
    table = (repo.dir / "README.md").read_text()
    assert "| [0004](0004-try-a-thing.md) | It helps on 5 of 5 seeds. | Accepted |" in table  # wrapped lines joined
    assert "| [0002](0002-start-the-unet.md) | Start the UNet |" in table  # no Finding: the title


def test_index_appended_when_markers_absent(repo):
    (repo.dir / "README.md").write_text("# Decisions\n")
    assert errors_matching(check(repo.config, repo.dir), "index is stale")
    decisions.update_index(repo.dir)
    text = (repo.dir / "README.md").read_text()
    assert "<!-- adr-index:start -->" in text and "[0003](0003-text-tower.md)" in text
    assert check(repo.config, repo.dir) == []


def test_exit_code_lists_all_errors(repo, capsys):
    repo.add(4, "Odd", status="Maybe")
    repo.write_config(repo.config.read_text() + "X = 1\n")
    decisions.update_index(repo.dir)
    assert repo.cli("check") == 1
    err = capsys.readouterr().err
    assert "2 errors" in err and "unknown status" in err and "X = 1 is not introduced" in err


# ---------------------------------------------------------------- scaffolding and the round trip


def test_round_trip(repo, capsys):
    decisions.update_index(repo.dir)
    assert check(repo.config, repo.dir) == []
    repo.write_config(
        repo.config.read_text().replace("0.001 ", "0.002 ").replace("(1, 2, 2)", "(1, 2, 4)") + 'NEW_KNOB = "a b"\n'
    )
    errs = check(repo.config, repo.dir)
    assert errors_matching(errs, "LEARNING_RATE = 0.002", "ADR 0002 decided LEARNING_RATE = 0.001")
    assert errors_matching(errs, "NEW_KNOB", "not introduced")
    assert diff(repo.config, repo.dir) == {
        "LEARNING_RATE": (0.001, 0.002),
        "CHANNEL_MULTS": ((1, 2, 2), (1, 2, 4)),
        "NEW_KNOB": (MISSING, "a b"),
    }

    assert repo.cli("new", "--title", "Raise the learning rate!", "--date", "2026-12-01") == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.name == "0004-raise-the-learning-rate.md"
    text = path.read_text()
    lines = text.splitlines()
    assert lines[0] == "# 0004: Raise the learning rate!"
    assert "Date: 2026-12-01" in lines
    assert "- LEARNING_RATE: 0.001 → 0.002" in lines
    assert "- CHANNEL_MULTS: (1, 2, 2) → (1, 2, 4)" in lines
    assert '- NEW_KNOB: (new) → "a b"' in lines
    adr = decisions.parse_adr(path)
    assert adr.errors == [] and adr.status == "Proposed" and adr.title == "Raise the learning rate!"
    assert [d.name for d in adr.decisions] == ["LEARNING_RATE", "CHANNEL_MULTS", "NEW_KNOB"]

    decisions.update_index(repo.dir)
    errs = check(repo.config, repo.dir)
    assert errors_matching(errs, "0004", "Proposed", "mark it Accepted")

    path.write_text(text.replace("\nProposed\n", "\nAccepted\n"))
    decisions.update_index(repo.dir)
    assert check(repo.config, repo.dir) == []
    assert newest_accepted(repo.dir) == (4, "Raise the learning rate!")

    prov = provenance.collect(
        read_config(repo.config),
        {},
        repo_root=str(repo.root),
        decisions_dir=str(repo.dir),
        config_path=str(repo.config),
    )
    assert prov["adr"] == {"number": 4, "title": "Raise the learning rate!"}
    assert prov["decisions_ok"] is True and prov["decision_errors"] == [] and prov["exploratory"] is False
    json.dumps(prov)


def test_new_without_differences_and_today(repo, capsys):
    assert repo.cli("new", "--title", "Explain something") == 0
    path = Path(capsys.readouterr().out.strip())
    adr = decisions.parse_adr(path)
    assert adr.decisions == [] and adr.errors == [] and adr.status == "Proposed"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", adr.date)


def test_new_supersedes(repo, capsys):
    repo.write_config(repo.config.read_text().replace('"ViT-B-32"', '"ViT-B-16"'))
    assert repo.cli("new", "--title", "Bigger tower", "--supersedes", "3", "--date", "2026-12-02") == 0
    path = Path(capsys.readouterr().out.strip())
    assert decisions.parse_adr(repo.dir / "0003-text-tower.md").status_text == "Superseded by 0004"
    new = decisions.parse_adr(path)
    assert new.status == "Proposed" and "Supersedes ADR 0003." in path.read_text()
    assert [(d.name, d.old, d.new) for d in new.decisions] == [("OPEN_CLIP_MODEL", "ViT-B-32", "ViT-B-16")]
    path.write_text(path.read_text().replace("\nProposed\n", "\nAccepted\n"))
    decisions.update_index(repo.dir)
    assert check(repo.config, repo.dir) == []


def test_new_refuses_bad_input(repo, capsys):
    assert repo.cli("new", "--title", "!!! ---") == 2
    assert "empty" in capsys.readouterr().err
    assert repo.cli("new", "--title", "Fine", "--supersedes", "42") == 2
    assert "no ADR 0042" in capsys.readouterr().err
    assert repo.cli("new", "--title", "Fine", "--date", "2026-13-45") == 2
    assert sorted(p.name for p in repo.dir.glob("0*.md"))[-1].startswith("0003-")


def test_new_without_template_uses_default(repo, capsys):
    (repo.dir / "template.md").unlink(missing_ok=True)
    repo.write_config(repo.config.read_text().replace("0.001 ", "0.003 "))
    assert repo.cli("new", "--title", "No template", "--date", "2026-12-03") == 0
    adr = decisions.parse_adr(Path(capsys.readouterr().out.strip()))
    assert adr.errors == [] and [(d.old, d.new) for d in adr.decisions] == [(0.001, 0.003)]


# ---------------------------------------------------------------- provenance


def test_provenance_overrides_and_errors(repo):
    cfg = read_config(repo.config)
    prov = provenance.collect(
        {**cfg, "LEARNING_RATE": 0.002},
        {"LEARNING_RATE": 0.002, "CHANNEL_MULTS": (1, 2)},
        repo_root=str(repo.root),
        decisions_dir=str(repo.dir),
        config_path=str(repo.config),
    )
    assert prov["exploratory"] is True and prov["decisions_ok"] is True  # a stale index is not a decision error
    assert prov["overrides"] == {"LEARNING_RATE": 0.002, "CHANNEL_MULTS": [1, 2]}
    assert prov["adr"]["number"] == 3
    assert prov["git_commit"] is None  # tmp dir is not a git repo
    assert re.fullmatch(r"[0-9a-f]{12}", prov["config_hash"])
    assert prov["config_hash"] != provenance.config_hash(cfg)
    assert provenance.config_hash(cfg) == provenance.config_hash(dict(reversed(list(cfg.items()))))
    assert provenance.config_hash({"A": (1, 2)}) != provenance.config_hash({"A": [1, 2]})
    json.dumps(prov)

    repo.write_config(repo.config.read_text() + "X = 1\n")
    prov = provenance.collect(
        cfg, {}, repo_root=str(repo.root), decisions_dir=str(repo.dir), config_path=str(repo.config)
    )
    assert prov["exploratory"] is True and prov["decisions_ok"] is False
    assert errors_matching(prov["decision_errors"], "X = 1")


def test_architecture_drift():
    saved = {"CHANNEL_MULTS": [1, 2, 2], "BASE_CHANNELS": 32, "HEADS": 4, "LR": 1.0}
    current = {"CHANNEL_MULTS": (1, 2, 2), "BASE_CHANNELS": 64, "LR": 2.0, "NEW": 1}
    drift = provenance.architecture_drift(saved, current, ["CHANNEL_MULTS", "BASE_CHANNELS", "HEADS", "NEW"])
    assert drift == {"BASE_CHANNELS": (32, 64), "HEADS": (4, MISSING), "NEW": (MISSING, 1)}


def test_this_repos_config_matches_its_accepted_decisions():
    """`make decisions` as part of `make test`: config.py on this branch is exactly what the ADRs decide."""
    from ddpm.decisions import check as decisions

    errors = decisions.check(decisions.DEFAULT_CONFIG, decisions.DEFAULT_DIR)
    assert errors == [], "\n".join(errors)
