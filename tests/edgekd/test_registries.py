"""One registration style for every pluggable family: names declared without torch, module-level classes and
builders registered by name in the module that needs torch, imported when a name is first built."""

from __future__ import annotations

import importlib
import math
import pickle
import subprocess
import sys

import pytest
import torch

from edgekd.kd import KD_LOSSES, LossBatch, LossConfig, build_loss
from edgekd.models.students import STUDENTS
from edgekd.models.teachers import TEACHERS

REGISTRIES = {"KD loss": KD_LOSSES, "student": STUDENTS, "teacher": TEACHERS}

_HELP = """
import sys
sys.argv = {argv!r}
from {module} import main
try:
    main()
except SystemExit as e:
    code = e.code
print("HEAVY", sorted(m for m in ("torch", "tensorflow", "onnx2tf") if m in sys.modules), "EXIT", code)
"""


@pytest.mark.parametrize("module,argv", [
    ("edgekd.cli", ["edgekd", "--help"]), ("edgekd.cli", ["edgekd", "distill", "--help"]),
    ("edgekd.cli", ["edgekd", "run", "--help"]), ("edgekd_runtime.cli", ["edgekd-rt", "--help"]),
    ("edgekd_runtime.cli", ["edgekd-rt", "bench", "--help"])])
def test_help_imports_neither_torch_nor_tensorflow(module, argv):
    p = subprocess.run([sys.executable, "-c", _HELP.format(argv=argv, module=module)], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Usage" in p.stdout
    assert p.stdout.strip().splitlines()[-1] == "HEAVY [] EXIT 0", p.stdout[-500:]


def test_names_are_listed_without_torch():
    code = ("import sys\nfrom edgekd.kd import KD_LOSSES\nfrom edgekd.models.students import STUDENTS\n"
            "from edgekd.models.teachers import TEACHERS\n"
            "print(KD_LOSSES.names(), STUDENTS.names(), TEACHERS.names(), 'torch' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == (
        "['blank_kd', 'dkd', 'fitnet', 'frame_kd', 'kd', 'mse', 'none', 'seq_kd'] "
        "['cnn', 'ctc', 'dscnn', 'dsctc', 'linear', 'mlp'] ['cnn', 'cnn-small', 'convctc', 'crnn', 'crnn-small'] False")


@pytest.mark.parametrize("family", sorted(REGISTRIES))
def test_declared_names_are_exactly_the_registered_ones(family):
    reg = REGISTRIES[family]
    declared = reg.names()
    for module in set(reg.providers().values()):
        importlib.import_module(module)
    assert reg.names() == declared  # a provider registered nothing undeclared
    for name in declared:
        assert reg.get(name) is reg.get(name)  # each declared name is registered, once


def test_losses_are_module_level_classes_that_pickle():
    from edgekd.kd.loss_modules import DecoupledKD, FitNetHint, HintonKD, WeightedSum

    assert type(build_loss("kd")) is type(build_loss("kd")) is HintonKD  # one class, not one per call
    assert isinstance(build_loss(LossConfig("dkd", dkd_beta=2.0)), DecoupledKD)
    torch.manual_seed(0)
    s, t, y = torch.randn(4, 5), torch.randn(4, 5), torch.tensor([0, 3, 1, 4])
    sf, tf = torch.randn(4, 6), torch.randn(4, 3)
    b = LossBatch(s, y, teacher_logits=t, student_features=sf, teacher_features=tf)
    loss = build_loss(LossConfig("0.7*dkd+0.3*fitnet", dkd_beta=2.0))
    assert isinstance(loss, WeightedSum) and isinstance(loss.terms[1], FitNetHint)
    before = loss(b).item()  # builds the FitNet adapter
    again = pickle.loads(pickle.dumps(loss))
    assert type(again) is WeightedSum and again.terms[0].b == 2.0
    assert math.isclose(again(b).item(), before, rel_tol=1e-6)


def test_line_losses_and_models_pickle():
    from edgekd.kd.ctc_losses import BlankAwareKD
    from edgekd.models.line_models import line_ensemble
    from edgekd.models.students import build_student

    assert type(pickle.loads(pickle.dumps(build_loss("blank_kd")))) is BlankAwareKD
    torch.manual_seed(0)
    cases = [(build_student("ctc-w4-d2-r24", 11), (1, 1, 24, 96)), (TEACHERS.get("cnn-small")(10), (1, 1, 28, 28)),
             (line_ensemble([TEACHERS.get("crnn-small")(11, height=24)]), (1, 1, 24, 96))]
    for model, shape in cases:
        model.eval()
        x = torch.randn(*shape)
        again = pickle.loads(pickle.dumps(model))
        assert type(again) is type(model)
        with torch.no_grad():
            assert torch.equal(again(x), model(x))
