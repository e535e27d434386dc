"""The made-up platform's words (:mod:`tests.plugins.megaphone`) come from its own catalogue,
registered through its entry point object: cms's pages show them in English, and cms's
catalogue has no line about them."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from cms.models import Area, Role
from cms.web import create_app
from cms.web.i18n import plugin_catalogues
from tests.cms.test_i18n import (
    PO,
    chinese_left,
    load_catalogue,
    missing_translations,
    plugin_catalogue,
    set_english,
    user_data,
)
from tests.conftest import login
from tests.plugins.test_made_up_platform import installed  # noqa: F401  (fixture)

MEGAPHONE = Path(__file__).resolve().parent / "megaphone"


def test_the_platform_has_its_own_complete_catalogue() -> None:
    catalogue = plugin_catalogue(MEGAPHONE)
    assert (None, "扩音站") in catalogue.msgids
    assert missing_translations(catalogue) == []
    assert load_catalogue(PO).get("扩音站") is None  # cms knows none of its words


def test_its_words_read_in_english_on_the_chats_page(  # type: ignore[no-untyped-def]
    installed: Path,  # noqa: F811  (the fixture imported above)
    settings,
    engine,
    session: Session,
    grid: dict[str, Area],
    make_user,
) -> None:
    assert (MEGAPHONE / "translations").resolve() in plugin_catalogues().values()
    app = create_app(settings, engine=engine)
    app.config.update(TESTING=True, WTF_CSRF_ENABLED=False)
    client = app.test_client()
    login(client, make_user(Role.ADMIN))

    # Chinese first, as before.
    assert ">扩音站</option>" in client.get("/chats").get_data(as_text=True)

    set_english(client)
    html = client.get("/chats").get_data(as_text=True)
    assert '<option value="megaphone"' in html and ">Megaphone</option>" in html
    assert chinese_left(html, user_data(session)) == []

    response = client.post(
        "/chats/robots",
        data={
            "platform": "megaphone",
            "webhook": "https://megaphone.example/x",
            "area_id": grid["v1"].id,
        },
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "A Megaphone address looks like https://megaphone.example/hook/" in html
    assert "Megaphone: copy the address from the “Connect” page" in html
    assert chinese_left(html, user_data(session)) == []
