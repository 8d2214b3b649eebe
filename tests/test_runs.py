"""ddpm.decisions.runs: the `make runs` table, on hand-written run directories."""

import json

from ddpm.decisions import runs


def write_run(root, name, started, *, adr=3, overrides=None, step=100, loss=0.12345, ev=None, ok=True):
    d = root / name
    d.mkdir(parents=True)
    data = {
        "name": name,
        "started": started,
        "provenance": {
            "config_hash": "abc123def456",
            "adr": {"number": adr, "title": "T"} if adr else None,
            "git_commit": None,
            "git_dirty": None,
            "overrides": overrides or {},
            "decisions_ok": ok,
            "decision_errors": [] if ok else ["x"],
            "exploratory": bool(overrides) or not ok,
        },
        "step": step,
        "epoch": 1,
        "final_loss": loss,
    }
    if ev is not None:
        data["eval"] = ev
    (d / "run.json").write_text(json.dumps(data))
    return d


def table_rows(out):
    lines = out.splitlines()
    assert lines[0].split() == list(runs.COLUMNS)
    return [ln for ln in lines[1:] if ln and not ln.startswith("note:")]


def test_no_runs(tmp_path, capsys):
    assert runs.main(["--dir", str(tmp_path / "runs")]) == 0
    assert capsys.readouterr().out.strip() == "No runs yet: run make train"
    (tmp_path / "runs").mkdir()
    assert runs.main(["--dir", str(tmp_path / "runs")]) == 0
    assert "No runs yet" in capsys.readouterr().out


def test_table_newest_first_with_overrides_and_eval(tmp_path, capsys):
    root = tmp_path / "runs"
    write_run(root, "b-old", "2026-11-20T10:00:00", adr=2, step=500, loss=0.5)
    write_run(root, "a-new", "2026-11-22T09:30:00", overrides={"LEARNING_RATE": 0.002}, ev={"joint_accuracy": 0.8125})
    write_run(root, "c-mid", "2026-11-21T08:00:00+00:00", adr=None, ok=False, ev={"other": 1})
    assert runs.main(["--dir", str(root)]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert [r.split()[0] for r in rows] == ["a-new", "c-mid", "b-old"]
    new, mid, old = (r.split() for r in rows)
    assert new[1:4] == ["2026-11-22", "09:30", "0003"]
    assert "LEARNING_RATE=0.002" in new and "100" in new and "0.1235" in new and new[-1] == "0.812"
    assert mid[3] == "-" and "exploratory" in mid and "(decisions" in " ".join(mid) and mid[-1] == "-"
    assert old[3:8] == ["0002", "shapes", "-", "-", "500"] and "0.5000" in old


def test_missing_and_corrupt_run_json_tolerated(tmp_path, capsys):
    root = tmp_path / "runs"
    write_run(root, "good", "2026-11-22T09:30:00")
    (root / "empty" / "checkpoints").mkdir(parents=True)  # a run that stopped before writing run.json
    (root / "data" / "digits").mkdir(parents=True)  # not a run: what `make digits` writes, skipped
    (root / "data" / "digits" / "0001.png").write_bytes(b"")
    (root / "broken").mkdir()
    (root / "broken" / "run.json").write_text("{not json")
    (root / "list").mkdir()
    (root / "list" / "run.json").write_text("[1, 2]")
    (root / "stray-file.txt").write_text("ignored")
    assert runs.main(["--dir", str(root)]) == 0
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert rows[0].split()[0] == "good"
    assert sorted(r.split()[0] for r in rows[1:]) == ["broken", "empty", "list"]
    assert all(r.split()[1:] == ["?"] * (len(runs.COLUMNS) - 1) for r in rows[1:])
    assert "note: empty: no run.json" in out
    assert "note: broken: unreadable run.json" in out
    assert "note: list: unreadable run.json" in out
    assert "stray-file" not in out and "data" not in [r.split()[0] for r in rows]


def test_data_column_names_the_dataset_folder_size_and_skips(tmp_path, capsys):
    root = tmp_path / "runs"
    d = write_run(root, "real", "2026-11-22T09:30:00")
    data = json.loads((d / "run.json").read_text())
    data["provenance"]["data"] = {"dataset": "folder", "data_dir": "/x/digits", "size": 1797, "skipped": 2}
    (d / "run.json").write_text(json.dumps(data))
    assert runs.main(["--dir", str(root)]) == 0
    assert "folder:digits n=1797 (2 skipped)" in capsys.readouterr().out


def test_compute_column_names_the_precision_and_hardware(tmp_path, capsys):
    """ADR 0035: the same config ran 11x apart in bf16 and fp32, so a row says what it computed in and on what."""
    root = tmp_path / "runs"
    d = write_run(root, "avx2", "2026-11-22T09:30:00")
    data = json.loads((d / "run.json").read_text())
    data["provenance"].update(precision="fp32", hardware="AMD EPYC (AVX2), 2 threads")
    (d / "run.json").write_text(json.dumps(data))
    write_run(root, "older", "2026-11-21T09:30:00")  # before ADR 0035 recorded either
    assert runs.main(["--dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "fp32 on AMD EPYC (AVX2), 2 threads" in out
    older = next(r for r in table_rows(out) if r.startswith("older")).split()
    assert older[-4] == "-"  # COMPUTE, then STEPS, LOSS, EVAL
