"""token_spans on hand-made byte sequences: each id is one UTF-8 byte, so characters split across ids."""

import pytest

from saliency_lab.saliency.offsets import token_spans

SPECIAL = 1000  # an id outside the byte range plays EOS


def byte_decode(ids):
    return bytes(ids).decode("utf-8", errors="replace")


def check(spans):
    assert "".join(spans.texts) == spans.output_text
    for t, s, e in zip(spans.texts, spans.starts, spans.ends, strict=True):
        assert spans.output_text[s:e] == t
    assert spans.starts == sorted(spans.starts) and spans.ends == sorted(spans.ends)


def test_ascii_one_char_per_token():
    sp = token_spans(list(b"hi you"), byte_decode, {SPECIAL})
    check(sp)
    assert sp.texts == list("hi you") and sp.output_text == "hi you"


def test_multibyte_char_goes_to_completing_token():
    ids = list("aé東🙂b".encode())  # 1 + 2 + 3 + 4 + 1 bytes
    sp = token_spans(ids, byte_decode, {SPECIAL})
    check(sp)
    assert sp.output_text == "aé東🙂b"
    assert sp.texts == ["a", "", "é", "", "", "東", "", "", "", "🙂", "b"]


def test_special_token_empty_span_mid_and_end():
    ids = list(b"ab") + [SPECIAL] + list("é".encode()) + [SPECIAL]
    sp = token_spans(ids, byte_decode, {SPECIAL})
    check(sp)
    assert sp.output_text == "abé"
    assert sp.texts == ["a", "b", "", "", "é", ""]
    assert (sp.starts[2], sp.ends[2]) == (2, 2)
    assert (sp.starts[-1], sp.ends[-1]) == (3, 3)


def test_incomplete_trailing_bytes_stay_in_text():
    ids = list(b"ok") + list("東".encode())[:2]  # generation stopped mid-character
    sp = token_spans(ids, byte_decode, {SPECIAL})
    check(sp)
    # output_text is what decode gives; the replacement char sits on the first token that shows it.
    assert sp.output_text == "ok\ufffd"
    assert sp.texts == ["o", "k", "\ufffd", ""]


def test_decoder_that_rewrites_earlier_text():
    # A decoder that renders a lone 0xC3 as '?' but the pair C3 A9 as 'é' (earlier text is rewritten).
    def decode(ids):
        raw = bytes(ids)
        if raw.endswith(b"\xc3"):
            return raw[:-1].decode() + "?"
        return raw.decode("utf-8", errors="replace")

    sp = token_spans(list("xé".encode()), decode, set())
    check(sp)
    assert sp.texts == ["x", "", "é"]


@pytest.mark.parametrize("ids", [[], [SPECIAL], [SPECIAL, SPECIAL]])
def test_empty_outputs(ids):
    sp = token_spans(ids, byte_decode, {SPECIAL})
    check(sp)
    assert sp.output_text == "" and sp.texts == [""] * len(ids)
