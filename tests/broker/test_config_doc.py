"""docs/configuration.md is what the code understands: every broker and topic setting, its default, its effect."""

from __future__ import annotations

from pathlib import Path

from loosely.broker._listening import LISTENER_SETTINGS
from loosely.broker.config import BROKER_SETTINGS
from loosely.broker.config_doc import BROKER_SETTING_DOCS, LISTENER_SETTING_DOCS, honoured_topic_configs, render
from loosely.storage.config import TOPIC_CONFIGS
from loosely.tls.settings import SSL_SETTINGS

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_reference_is_up_to_date() -> None:
    assert DOC.read_text() == render(), "run: python -m loosely.broker.config_doc > docs/configuration.md"


def test_every_broker_setting_is_documented_and_no_other() -> None:
    assert set(BROKER_SETTING_DOCS) == set(BROKER_SETTINGS)


def test_every_listener_and_tls_setting_is_documented_and_no_other() -> None:
    assert set(LISTENER_SETTING_DOCS) == set(LISTENER_SETTINGS) | set(SSL_SETTINGS)


def test_a_setting_is_called_accepted_exactly_when_it_changes_nothing() -> None:
    honoured = honoured_topic_configs()
    assert {"retention.ms", "cleanup.policy", "max.message.bytes", "message.timestamp.type"} <= honoured
    for c in TOPIC_CONFIGS.values():
        says_accepted = c.doc.startswith("Accepted for compatibility")
        assert says_accepted == (c.name not in honoured), c.name
