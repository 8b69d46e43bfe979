#!/usr/bin/env python3
"""Mutation check of the HMA model and training code: does the default test suite notice a broken model?

For each mutation: copy this checkout to a temporary folder (without .venv, data, outputs, .git), apply ONE text
patch to the copy's src/, check that the copy is what gets imported, run the default test suite on the copy and
print the failing tests, or SURVIVED. The checkout itself is never modified.

    python tools/mutation_check.py                 # baseline + every mutation (~70 s each on one core)
    python tools/mutation_check.py M5 M7a          # only these
    python tools/mutation_check.py --list
    python tools/mutation_check.py --tests tests/model tests/lit  M3   # a subset of the suite

A patch whose anchor text is no longer in the source (the code changed) is reported as PATCH-FAILED, not run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

SRC_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COPY = os.path.join(tempfile.gettempdir(), "hma_zoo_mutation_copy")
PY = sys.executable
PYTEST = os.path.join(os.path.dirname(sys.executable), "pytest")

# id -> (description, file under src/hma_zoo, [(old, new), ...]); each old must occur exactly once.
MUTATIONS: dict[str, tuple[str, str, list[tuple[str, str]]]] = {
    "M1a": ("embed_video: masked positions not replaced by the mask token (vq: they read id 0; mar: true value)",
            "model/hma.py",
            [("h = torch.where(mask.unsqueeze(-1), self.mask_token.to(h.dtype), h)", "pass")]),
    "M1b": ("embed_video ignores the mask entirely (no masked_fill, no mask token): true values visible",
            "model/hma.py",
            [('        if corrupt is not None and self.kind == "vq":\n',
              '        mask = None\n        if corrupt is not None and self.kind == "vq":\n')]),
    "M1c": ("HMA.forward does not pass token_mask to embed_video",
            "model/hma.py",
            [("x_img = self.embed_video(x, mask, corrupt_s)", "x_img = self.embed_video(x, None, corrupt_s)")]),
    "M2": ("compute_loss: video loss over all positions instead of the masked ones",
           "model/hma.py",
           [("        mask = self.to_trunk_mask(token_mask)\n",
             "        mask = self.to_trunk_mask(token_mask)\n        mask = torch.ones_like(mask)\n")]),
    "M3": ("compute_loss: action dropout never applied in training mode",
           "model/hma.py",
           [("if self.training and p_drop > 0 and self.action_stems is not None:", "if False:")]),
    "M4a": ("embed_video ignores corrupt",
            "model/hma.py",
            [('if corrupt is not None and self.kind == "vq":', "if False:")]),
    "M4b": ("HMALitModule stops passing the corruption mask to compute_loss",
            "lit/world_model.py",
            [("corrupt=m.corrupt", "corrupt=None")]),
    "M5": ("mar_frame re-samples already revealed tokens at every step",
           "sampling/frame.py",
           [("pos = order[:, revealed:target]", "pos = order[:, :target]")]),
    "M6a": ("maskgit_frame may re-hide revealed tokens (known tokens compete for the hidden slots)",
            "sampling/frame.py",
            [('score = score.masked_fill(known, float("inf"))', "score = score")]),
    "M6b": ("maskgit_frame re-samples (changes) revealed ids",
            "sampling/frame.py",
            [("new_ids = torch.where(known, ids, new_ids)", "new_ids = new_ids")]),
    "M7a": ("sampling schedule linear instead of cosine",
            "sampling/schedule.py",
            [("math.cos(math.pi / 2 * (step + 1) / steps)", "(1 - (step + 1) / steps)")]),
    "M7b": ("training mask ratio linear instead of cosine",
            "lit/masking.py",
            [("return torch.cos(0.5 * math.pi * u)", "return 1.0 - u")]),
    "M8": ("STBlock: temporal attention without its pre-norm",
           "model/trunk.py",
           [('h = rearrange(self.norm_t(x), "b t s d -> (b s) t d")', 'h = rearrange(x, "b t s d -> (b s) t d")')]),
    "M9": ("FactorizedHead.loss ignores label_smoothing",
           "model/heads.py",
           [("label_smoothing=self.label_smoothing,", "label_smoothing=0.0,")]),
    "M10": ("concat+adaln ignores actions: no appended action tokens and adaLN gets a=None",
            "model/hma.py",
            [("        mode = self.config.conditioning.mode\n        ctx = None\n",
              '        mode = self.config.conditioning.mode\n        ctx = None\n'
              '        if mode == "concat+adaln":\n            a = None\n')]),
    "M10b": ("concat+adaln: the action tokens are not appended (adaLN still gets the actions)",
             "model/hma.py",
             [("x = torch.cat((x_img, tokens), dim=2)",
               'x = x_img if mode == "concat+adaln" else torch.cat((x_img, tokens), dim=2)')]),
    "M10c": ("concat+adaln: adaLN gets a=None (the appended action tokens still carry the actions)",
             "model/hma.py",
             [("h = self.trunk(x, a, ctx,", 'h = self.trunk(x, None if mode == "concat+adaln" else a, ctx,')]),
}


def sync() -> None:
    """Copy the checkout to COPY, leaving out .venv, data, outputs, .git and caches."""
    shutil.rmtree(COPY, ignore_errors=True)
    top = {".venv", "data", "outputs", ".git"}

    def ignore(directory: str, names: list[str]) -> set[str]:
        skip = {n for n in names if n in ("__pycache__", ".pytest_cache", ".ruff_cache")}
        if os.path.abspath(directory) == SRC_REPO:
            skip |= top & set(names)
        return skip

    shutil.copytree(SRC_REPO, COPY, ignore=ignore, symlinks=True)


def apply(key: str) -> str | None:
    """Apply mutation ``key`` to the copy; returns an error message if an anchor is missing or ambiguous."""
    _, rel, edits = MUTATIONS[key]
    path = os.path.join(COPY, "src/hma_zoo", rel)
    with open(path) as f:
        text = f.read()
    for old, new in edits:
        n = text.count(old)
        if n != 1:
            return f"anchor found {n} times in {rel}: {old!r}"
        text = text.replace(old, new)
    with open(path, "w") as f:
        f.write(text)
    return None


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update(PYTHONPATH=f"{COPY}/src:{COPY}", HF_HUB_OFFLINE="1", MUJOCO_GL="egl")
    return e


def check_import() -> None:
    out = subprocess.run([PY, "-c", "import hma_zoo; print(hma_zoo.__file__)"], cwd=COPY, env=env(),
                         capture_output=True, text=True, check=True).stdout.strip()
    if not out.startswith(COPY + "/src/"):
        raise SystemExit(f"the copy is not what gets imported: {out}")


def run_suite(tests: list[str]) -> tuple[list[str], str, float]:
    t0 = time.time()
    proc = subprocess.run([PYTEST, "-q", "-p", "no:warnings", "-p", "no:cacheprovider", "-rfE", *tests], cwd=COPY,
                          env=env(), capture_output=True, text=True, timeout=1800)
    failed = sorted({m.group(1) for m in re.finditer(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, re.M)})
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    return failed, tail, time.time() - t0


def main(argv: list[str]) -> None:
    tests = ["tests"]
    if "--list" in argv:
        for key, (desc, rel, _) in MUTATIONS.items():
            print(f"{key:5s} {rel:22s} {desc}")
        return
    if "--tests" in argv:
        i = argv.index("--tests")
        rest = argv[i + 1:]
        tests = [a for a in rest if not re.fullmatch(r"M\d+[a-z]?", a)]
        argv = argv[:i] + [a for a in rest if re.fullmatch(r"M\d+[a-z]?", a)]
    keys = [a for a in argv if a in MUTATIONS] or list(MUTATIONS)
    unknown = [a for a in argv if a not in MUTATIONS and not a.startswith("--")]
    if unknown:
        raise SystemExit(f"unknown mutation(s) {unknown}; see --list")
    summary = []
    if not [a for a in argv if a in MUTATIONS] and "--no-baseline" not in argv:
        sync()
        check_import()
        failed, tail, dt = run_suite(tests)
        print(f"BASELINE (unmutated copy): {'all pass' if not failed else 'FAILS: ' + ', '.join(failed)}"
              f"  [{tail}; {dt:.0f}s]", flush=True)
    for key in keys:
        sync()
        err = apply(key)
        if err:
            print(f"{key}: PATCH-FAILED ({err})", flush=True)
            summary.append((key, "PATCH-FAILED"))
            continue
        check_import()
        failed, tail, dt = run_suite(tests)
        desc = MUTATIONS[key][0]
        if failed:
            print(f"{key}: {desc}\n    caught by {len(failed)} test(s) [{dt:.0f}s]:", flush=True)
            for name in failed:
                print(f"      {name}", flush=True)
        else:
            print(f"{key}: {desc}\n    SURVIVED  [{tail}; {dt:.0f}s]", flush=True)
        summary.append((key, f"{len(failed)} failing" if failed else "SURVIVED"))
    sync()  # leave the copy unmutated
    print("\nSUMMARY: " + ", ".join(f"{k}={v}" for k, v in summary))


if __name__ == "__main__":
    main(sys.argv[1:])
