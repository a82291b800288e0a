"""Model replies are untrusted text: the JSON schema first, then lenient fallbacks, else a clear error."""

from __future__ import annotations

import pytest

from chattracker.mllm.errors import ReplyParseError
from chattracker.mllm.parsing import parse_reply


@pytest.mark.parametrize("reply, foreground, background, method", [
    ('{"foreground": "red car", "background": ["tree", "person"]}', "red car", ["tree", "person"], "json"),
    ('Sure!\n```json\n{"foreground": "man in black", "background": "car. tree"}\n```\nHope this helps.',
     "man in black", ["car", "tree"], "json"),
    ('Here you go: {"Foreground": " white  airplane. ", "Background": ["sky", "sky", "runway"]} Anything else? {',
     "white airplane", ["sky", "runway"], "json"),
    ('{"target": "dog on the left", "distractors": "cat, ball"}', "dog on the left", ["cat", "ball"], "json"),
    ("Foreground: a white plane\nBackground: sky, runway, truck", "a white plane", ["sky", "runway", "truck"], "key_lines"),
    ('**Foreground**: "woman in red"\n- background: ["car", "tree"]', "woman in red", ["car", "tree"], "key_lines"),
    ('The target is "small brown dog" near the bench.', "small brown dog", [], "quoted"),
])
def test_accepted_forms(reply, foreground, background, method):
    parsed = parse_reply(reply)
    assert (parsed.foreground, parsed.background, parsed.method) == (foreground, background, method)


@pytest.mark.parametrize("reply", ["", "   ", "word salad here there", "{\"foreground\": \"...\"}", "12345 !!! ###",
                                   '{"foreground": ""}', "<|im_end|><|im_end|>"])
def test_nothing_usable_is_a_clear_error_with_the_reply(reply):
    with pytest.raises(ReplyParseError) as caught:
        parse_reply(reply)
    assert "reply" in str(caught.value) and caught.value.reply == reply
    assert "\n" not in str(caught.value)


def test_overlong_phrase_is_rejected():
    with pytest.raises(ReplyParseError):
        parse_reply('{"foreground": "' + "very " * 60 + 'long"}')
