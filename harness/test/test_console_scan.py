"""The guest's serial log is read with bounded memory (issue 17): the boot
wait scans each byte once, at most CHUNK_BYTES a look, and finds a failure
pattern wherever it lies, across looks too; tails read only the end. Before,
the whole log was read (twice) every 0.5 s while the guest booted."""

import re
import tracemalloc

from vnetct.vm import console
from vnetct.vm.console import ConsoleScanner, tail_text

FAILURE = re.compile(r"Kernel panic|end trace")


def test_a_failure_before_a_flood_is_found_and_each_look_reads_one_chunk(tmp_path):
    log = tmp_path / "serial.log"
    flood = ("x" * 1023 + "\n") * (3 * console.CHUNK_BYTES // 1024)  # exactly three chunks
    log.write_text(flood + "[ 1.0] Kernel panic - not syncing\n" + flood)
    scanner = ConsoleScanner(log, FAILURE)
    tracemalloc.start()
    looks = 0
    while (match := scanner.search()) is None:
        looks += 1
        assert looks < 10, "never found"
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert match.group(0) == "Kernel panic"
    assert looks == 3  # three looks at the flood, found in the fourth
    assert peak < 4 * console.CHUNK_BYTES, peak


def test_a_pattern_split_between_two_looks_is_found(tmp_path):
    log = tmp_path / "serial.log"
    log.write_text("boot\nKernel pa")
    scanner = ConsoleScanner(log, FAILURE)
    assert scanner.search() is None
    with open(log, "a") as file:
        file.write("nic - not syncing\n")
    assert scanner.search().group(0) == "Kernel panic"


def test_nothing_new_and_a_missing_file_find_nothing(tmp_path):
    scanner = ConsoleScanner(tmp_path / "none.log", FAILURE)
    assert scanner.search() is None
    (tmp_path / "none.log").write_text("fine\n")
    assert scanner.search() is None and scanner.search() is None


def test_the_tail_is_the_end_cut_at_a_line(tmp_path):
    log = tmp_path / "serial.log"
    log.write_text("".join(f"line {n}\n" for n in range(100_000)))
    tail = tail_text(log, 1000)
    assert len(tail) <= 1000 and tail.endswith("line 99999\n") and tail.startswith("line ")
    assert tail_text(tmp_path / "none.log") == ""
