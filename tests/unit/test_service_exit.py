"""How ``eventsource run`` ends: never with interpreter shutdown racing a Kafka client.

A thread still inside librdkafka (a consumer close abandoned after its bound, a runner
the drain bound gave up on) must not see the interpreter torn down under it: ``leave``
ends the process at once with the service's exit code. A crash prints every thread's
stack (``report_crashes``), so a rare one can be diagnosed from the service's log.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

from eventsource.kafka.fetch import abandoned_closes, close_consumer


class _HangingConsumer:
    def __init__(self) -> None:
        self.release = threading.Event()

    def close(self) -> None:
        self.release.wait()


def test_an_abandoned_close_is_listed_until_it_finishes() -> None:
    consumer = _HangingConsumer()
    try:
        assert close_consumer(consumer, timeout=0.01, what="consumer of p") is False  # type: ignore[arg-type]
        assert "close-consumer of p" in abandoned_closes()
    finally:
        consumer.release.set()
    for thread in threading.enumerate():
        if thread.name == "close-consumer of p":
            thread.join(5.0)
    assert "close-consumer of p" not in abandoned_closes()


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


LEAVE = """
    import threading
    from eventsource.kafka.fetch import close_consumer
    from eventsource.service.logs import configure_logging, get_logger
    from eventsource.service.shutdown import leave

    class Hanging:
        def close(self):
            threading.Event().wait()  # never returns, like librdkafka issue 4884

    configure_logging("INFO", "json")
    if {hang}:
        close_consumer(Hanging(), timeout=0.01, what="consumer of p")
    leave(2, get_logger("eventsource.service"))
    print("interpreter shutdown")
    raise SystemExit(2)
"""


@pytest.mark.parametrize("hang", [True, False])
def test_the_service_exits_with_its_code_whether_or_not_a_close_still_hangs(hang: bool) -> None:
    done = run_python(LEAVE.format(hang=hang))
    assert done.returncode == 2, done.stderr
    if hang:
        assert "threads are still inside the Kafka client" in done.stderr
        assert "close-consumer of p" in done.stderr
        assert "interpreter shutdown" not in done.stdout  # it did not race the close
    else:
        assert "interpreter shutdown" in done.stdout
        assert "inside the Kafka client" not in done.stderr


def test_a_crash_of_the_service_prints_every_threads_stack() -> None:
    crashed = run_python(
        """
        import faulthandler, threading
        from eventsource.service.shutdown import report_crashes

        report_crashes()
        threading.Thread(target=threading.Event().wait, name="other", daemon=True).start()
        faulthandler._sigsegv()
        """
    )
    assert crashed.returncode < 0  # killed by the signal
    assert "Fatal Python error: Segmentation fault" in crashed.stderr
    assert "Current thread 0x" in crashed.stderr  # the one that crashed
    assert "\nThread 0x" in crashed.stderr  # and the other one


CLI = """
    import sys, threading
    from eventsource.cli.app import main
    from eventsource.kafka.fetch import close_consumer

    class Hanging:
        def close(self):
            threading.Event().wait()

    if {hang}:
        close_consumer(Hanging(), timeout=0.01, what="consumer of p")
    sys.argv = ["eventsource", {args}]
    try:
        main()
    finally:
        print("interpreter shutdown")
"""


@pytest.mark.parametrize("hang", [True, False])
@pytest.mark.parametrize(("args", "code"), [('"--help"', 0), ('"topics", "nope"', 2)])
def test_a_one_shot_command_exits_with_its_code_whether_or_not_a_close_still_hangs(
    hang: bool, args: str, code: int
) -> None:
    done = run_python(CLI.format(hang=hang, args=args))
    assert done.returncode == code, done.stderr
    if hang:
        assert f"exiting at once with code {code}" in done.stderr
        assert "close-consumer of p" in done.stderr
        assert "interpreter shutdown" not in done.stdout
    else:
        assert "interpreter shutdown" in done.stdout
        assert "exiting at once" not in done.stderr
