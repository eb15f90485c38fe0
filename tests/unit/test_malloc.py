"""The glibc malloc settings ``run`` applies before starting threads."""

from __future__ import annotations

import platform

import pytest

from publisher import malloc


def test_both_settings_are_applied_unless_the_operator_set_them() -> None:
    calls: list[tuple[int, int]] = []

    def mallopt(param: int, value: int) -> int:
        calls.append((param, value))
        return 1

    assert malloc.tune(env={}, mallopt=mallopt) == {
        "MALLOC_ARENA_MAX": 2,
        "MALLOC_MMAP_THRESHOLD_": 1 << 20,
    }
    assert calls == [(malloc.M_ARENA_MAX, 2), (malloc.M_MMAP_THRESHOLD, 1 << 20)]
    calls.clear()
    assert malloc.tune(env={"MALLOC_ARENA_MAX": "4"}, mallopt=mallopt) == {
        "MALLOC_MMAP_THRESHOLD_": 1 << 20
    }
    assert calls == [(malloc.M_MMAP_THRESHOLD, 1 << 20)]


def test_a_refused_setting_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    assert malloc.tune(env={}, mallopt=lambda _p, _v: 0) == {}
    assert "mallopt(MALLOC_ARENA_MAX, 2) was refused" in caplog.text


def test_no_c_library_call_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    assert malloc.tune(env={}) == {}


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_accepts_the_settings() -> None:
    # The real mallopt, in this test process: harmless (it only changes future allocations).
    assert malloc.tune(env={}) == {"MALLOC_ARENA_MAX": 2, "MALLOC_MMAP_THRESHOLD_": 1 << 20}
