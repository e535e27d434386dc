"""An admin on a phone installs a model brought on a USB stick, hears it, gives a village its voice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.audio.neural_model import write_tiny_kokoro
from tests.audio.test_install import tar_folder
from tests.browser.test_officer_path import log_in

pytestmark = pytest.mark.browser
pytest.importorskip("sherpa_onnx")


def test_install_listen_and_choose_an_outlet_voice(
    new_page: Callable[..., tuple[Any, Any]],
    live_server: Any,
    tmp_path: Path,
    screenshot: Callable[..., Path],
) -> None:
    archive = tmp_path / "usb" / "village-kokoro.tar.bz2"
    archive.parent.mkdir()
    archive.write_bytes(tar_folder(write_tiny_kokoro(tmp_path / "src"), "village-kokoro"))
    page, problems = new_page("phone")
    log_in(page, "admin")
    page.goto("/admin/voices/")
    page.set_input_files("input[name=archive]", str(archive))
    page.click("[data-testid=upload-form] button.primary")
    page.wait_for_load_state()
    assert "已安装 village-kokoro，试加载通过" in page.content()
    assert page.locator("[data-testid=model-village-kokoro]").is_visible()
    page.select_option("select[name=voice]", "zh-CN-YunjianNeural")
    page.click("[data-testid=trial-form] button.primary")
    page.wait_for_selector("[data-testid=trial-result] audio")
    src = page.get_attribute("[data-testid=trial-result] audio", "src")
    audio = page.request.get(src)
    assert audio.status == 200 and audio.headers["content-type"] == "audio/mpeg"
    screenshot(page, "voices-admin-phone")
    # the outlet: a male voice for this village
    page.goto("/admin/outlets")
    page.click("main a[href^='/admin/outlets/']:not([href$='new'])")
    page.select_option("select[name=voice]", "zh-CN-YunjianNeural")
    page.click("form.card button.primary")
    page.wait_for_load_state()
    with live_server.session() as session:
        from cms.models import Outlet

        voices = {o.voice for o in session.query(Outlet)}
    assert "zh-CN-YunjianNeural" in voices
