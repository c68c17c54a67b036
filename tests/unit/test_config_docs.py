"""The configuration reference: generated from the declarations, and no variable named in the
docs or the deployment files that edgematch does not read."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from edgematch.config import docs
from edgematch.config.declare import Concern
from edgematch.config.settings import READ_ELSEWHERE, Settings, known_names, variables

ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION = ROOT / "docs" / "configuration.md"
#: Where operators read or set variables: the README, the docs, the deployment files.
TEXT_SUFFIXES = {".md", ".yaml", ".yml", ".service", ".example", ".json", ".conf"}
DOCUMENTS = sorted(
    p
    for p in (ROOT / "README.md", *(ROOT / "docs").rglob("*"), *(ROOT / "deploy").rglob("*"))
    if p.is_file() and p.suffix in TEXT_SUFFIXES
)
#: Names that stand for any variable, not for one (bench's `--set EDGEMATCH_X=V`).
PLACEHOLDERS = {"EDGEMATCH_X"}
#: Variables of other software the deployment files may set: boto3's and the AWS SDKs'.
FOREIGN = re.compile(r"AWS_[A-Z0-9_]+")
# A whole name: EDGEMATCH_ and at least one more character, not a prefix such as EDGEMATCH_*.
NAME = re.compile(r"\bEDGEMATCH_[A-Z0-9_]*[A-Z0-9]\b")


def test_the_reference_in_docs_is_the_declarations() -> None:
    """docs/configuration.md's tables are exactly what the declarations render."""
    current = docs.spliced(CONFIGURATION.read_text(encoding="utf-8"))
    assert current == docs.reference(), (
        "docs/configuration.md is out of date with edgematch/config/settings.py: run "
        f"`{docs.COMMAND}` from the repository's root"
    )


def test_every_setting_has_one_row_with_help_and_a_default() -> None:
    """Each declared variable (and each read elsewhere) is one table row, under its concern,
    with a meaning and a default."""
    reference = docs.reference()
    for variable in (*variables(), *READ_ELSEWHERE):
        rows = [line for line in reference.splitlines() if line.startswith(f"| `{variable.name}`")]
        assert len(rows) == 1, variable.name
        cells = [cell.strip() for cell in rows[0].strip("|").split(" | ")]
        assert len(cells) == 4 and cells[1] and cells[2], rows[0]
    headings = re.findall(r"^### (.+)$", reference, flags=re.MULTILINE)
    assert headings == [c.value for c in Concern]


def test_documented_defaults_read_back_as_the_defaults() -> None:
    """A default the docs show as one value, given to its variable, is the default itself."""
    shown = 0
    for variable in variables():
        text = docs.default_text(variable)
        plain = re.fullmatch(r"`([^`]*)`(?: \(\d+ days\))?", text)
        if plain and variable.spec.parse is not None and not variable.spec.default_doc:
            settings = Settings.from_env({variable.name: plain.group(1)})
            assert getattr(settings, str(variable.field)) == variable.default, variable.name
            shown += 1
    assert shown > 40


def test_the_configuration_docs_name_no_metric() -> None:
    """Lower-case edgematch_* words in docs/ are metric names to the /metrics contract test
    (tests/e2e/test_metrics_contract.py): none may appear here, not even in an anchor."""
    text = CONFIGURATION.read_text(encoding="utf-8")
    assert not re.findall(r"\bedgematch_[a-z0-9_]+\b", text)


def test_secrets_are_documented_with_their_file_variant() -> None:
    """A secret's row names both ways to set it."""
    reference = docs.reference()
    for variable in variables():
        if variable.spec.secret:
            assert f"| `{variable.name}` / `{variable.name}_FILE` |" in reference


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_variables_named_in_docs_and_deployment_are_read(path: Path) -> None:
    """Every EDGEMATCH_* variable named in README.md, docs/ or deploy/ is one edgematch reads:
    a renamed or removed setting cannot survive in the docs or a manifest."""
    text = path.read_text(encoding="utf-8")
    unknown = sorted(set(NAME.findall(text)) - known_names() - PLACEHOLDERS)
    assert not unknown, f"{path.relative_to(ROOT)} names variables edgematch does not read"


def _k8s_variables() -> set[str]:
    names: set[str] = set()
    for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not doc:
                continue
            if doc.get("kind") == "ConfigMap":
                names.update(doc.get("data") or {})
            for container in _containers(doc):
                names.update(env["name"] for env in container.get("env") or ())
    return names


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    pod = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
    return [*(pod.get("containers") or ()), *(pod.get("initContainers") or ())]


def _systemd_variables() -> set[str]:
    names: set[str] = set()
    for path in sorted((ROOT / "deploy" / "systemd").iterdir()):
        for line in path.read_text(encoding="utf-8").splitlines():
            assignment = line.removeprefix("Environment=").strip().strip('"')
            if re.match(r"[A-Z][A-Z0-9_]*=", assignment):
                names.add(assignment.split("=", 1)[0])
    return names


def test_deployment_sets_only_variables_that_are_read() -> None:
    """The ConfigMap, the pods' env, the systemd units and edgematch.env.example set only
    variables edgematch declares, or the AWS SDK's own."""
    names = _k8s_variables() | _systemd_variables()
    assert {"EDGEMATCH_RATE_LIMIT", "EDGEMATCH_HEARTBEAT_DIR", "AWS_DEFAULT_REGION"} <= names
    strangers = sorted(n for n in names if n not in known_names() and not FOREIGN.fullmatch(n))
    assert not strangers


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but '-' and '_' dropped, '-' for ' '."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE):
        text = heading.strip().lower()
        kept = "".join(c for c in text if c in "-_ " or unicodedata.category(c)[0] in ("L", "N"))
        anchors.add(kept.replace(" ", "-"))
    return anchors


def test_links_in_the_configuration_docs_resolve() -> None:
    """Every relative link of docs/configuration.md reaches a file and, if it names one, a
    heading there (the reference links into the README and to its own notes)."""
    text = CONFIGURATION.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    for link in links:
        if re.match(r"[a-z]+://", link):
            continue
        target, _, anchor = link.partition("#")
        path = (CONFIGURATION.parent / target).resolve() if target else CONFIGURATION
        assert path.is_file(), link
        if anchor:
            assert anchor in _anchors(path.read_text(encoding="utf-8")), link


# --- the command --------------------------------------------------------------------------


def _document(between: str) -> str:
    return f"# Configuration\n\nBy hand.\n\n{docs.BEGIN}\n{between}\n{docs.END}\n\nNotes.\n"


def test_check_fails_on_a_stale_reference_and_names_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--check` exits 1 when the tables differ, saying what to run; the text around the
    markers is left alone when the command rewrites them."""
    path = tmp_path / "configuration.md"
    path.write_text(_document("| `EDGEMATCH_OLD` | gone | `1` | |\n"), encoding="utf-8")
    assert docs.main(["--check", "--path", str(path)]) == 1
    assert docs.COMMAND in capsys.readouterr().err
    assert docs.main(["--path", str(path)]) == 0
    assert path.read_text(encoding="utf-8") == _document(docs.reference())
    assert docs.main(["--check", "--path", str(path)]) == 0


@pytest.mark.parametrize(
    "text",
    [
        "no markers at all\n",
        f"{docs.END}\n{docs.BEGIN}\n",
        f"{docs.BEGIN}\n{docs.BEGIN}\n{docs.END}\n",
    ],
)
def test_a_document_without_one_pair_of_markers_is_refused(
    tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Missing, doubled or reversed markers exit 2 and leave the file as it was."""
    path = tmp_path / "configuration.md"
    path.write_text(text, encoding="utf-8")
    assert docs.main(["--path", str(path)]) == 2
    assert "settings:" in capsys.readouterr().err
    assert path.read_text(encoding="utf-8") == text


def test_print_writes_the_reference_alone(capsys: pytest.CaptureFixture[str]) -> None:
    """`--print` writes the tables to stdout and touches no file."""
    assert docs.main(["--print", "--path", "/nonexistent/configuration.md"]) == 0
    assert capsys.readouterr().out == docs.reference()
