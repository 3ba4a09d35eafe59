"""Coverage-guided long fuzz run of the decoders (dumps and destroy events) and /proc parsers (libFuzzer through
atheris).

    .venv/bin/pip install atheris
    .venv/bin/python tests/fuzz_atheris.py -runs=1000000 -rss_limit_mb=512 [-max_total_time=SECONDS]

Exits non-zero (with the input saved as crash-*) if anything but a DiagError escapes, an input hangs past
-timeout, or memory passes -rss_limit_mb.
"""

import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "exporter"))

with atheris.instrument_imports(include=["sockdiag_exporter"]):
    from fuzzing import decoder_target, events_target, procfs_target


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    choice = fdp.ConsumeIntInRange(0, 1023)
    if choice % 8 == 7:
        procfs_target(choice // 8, fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes()))
    elif choice % 8 == 6:
        events_target(choice // 8, fdp.ConsumeBytes(fdp.remaining_bytes()))
    else:
        decoder_target(choice, fdp.ConsumeBytes(fdp.remaining_bytes()))


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
