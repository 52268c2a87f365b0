"""Accept negotiation (pacsd.web.accept) with header strings real clients
send: OHIF (old and new), dicomweb-client, curl, browsers, Java."""

from __future__ import annotations

import random

import pytest

from pacsd.web.accept import MalformedMediaType, MediaType, negotiate, parse_accept, parse_media_type

DICOM = 'multipart/related; type="application/dicom"'
OCTETS = 'multipart/related; type="application/octet-stream"'
SEARCH = ["application/dicom+json", "application/json"]  # a QIDO or /metadata route
EXPLICIT_LE = "1.2.840.10008.1.2.1"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"

OHIF_OLD = "application/dicom+json, multipart/related; type=application/octet-stream; transfer-syntax=*"
CHROME_PAGE = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
CHROME_IMAGE = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
FIREFOX_PAGE = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
JAVA = "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2"


def chosen(accept: str | None, offers: list[str]) -> str | None:
    result = negotiate(accept, offers)
    return None if result is None else str(result.media_type)


def quality(accept: str, offer: str) -> float:
    result = negotiate(accept, [offer])
    return 0.0 if result is None else result.q


def test_old_ohif_header_picks_dicom_json_on_search_and_metadata() -> None:
    assert chosen(OHIF_OLD, SEARCH) == "application/dicom+json"
    assert chosen(OHIF_OLD, list(reversed(SEARCH))) == "application/dicom+json"  # application/json is not asked for


def test_old_ohif_header_on_frames_asks_for_the_stored_syntax() -> None:
    result = negotiate(OHIF_OLD, [OCTETS])
    assert result is not None
    assert result.media_type == parse_media_type(OCTETS)
    assert result.transfer_syntax == "*"


def test_multipart_type_must_match() -> None:
    assert chosen(OHIF_OLD, [DICOM]) is None  # octet-stream parts are not DICOM instances
    assert chosen("multipart/related; type=application/dicom", [OCTETS, DICOM]) == DICOM
    assert chosen("multipart/related", [OCTETS, DICOM]) == OCTETS  # no type: any multipart, route order


def test_newer_ohif_quoted_parameters() -> None:
    result = negotiate('multipart/related; type="application/octet-stream"; transfer-syntax="*"', [OCTETS])
    assert result is not None and result.transfer_syntax == "*"


def test_dicomweb_client_retrieve_with_a_transfer_syntax() -> None:
    accept = f'multipart/related; type="application/dicom"; transfer-syntax={J2K_LOSSLESS}'
    result = negotiate(accept, [DICOM])
    assert result is not None
    assert result.transfer_syntaxes == (J2K_LOSSLESS,)
    assert result.media_type.param("transfer-syntax") is None  # the offer is returned, not the range


def test_dicomweb_client_search_with_charset() -> None:
    assert chosen("application/dicom+json; charset=utf-8", ["application/dicom+json; charset=utf-8"]) is not None
    # a parameter the offer does not carry does not match it (RFC 9110 12.5.1)
    assert chosen("application/dicom+json; charset=utf-8", ["application/dicom+json"]) is None
    assert chosen("application/dicom+json; charset=UTF-8", ["application/dicom+json; charset=utf-8"]) is not None


def test_missing_or_blank_header_is_anything() -> None:
    for header in (None, "", "  ", " , ,"):
        result = negotiate(header, SEARCH)
        assert result is not None and str(result.media_type) == "application/dicom+json", header
        assert result.transfer_syntaxes == (None,)


def test_curl_default() -> None:
    assert chosen("*/*", [DICOM, "application/dicom"]) == DICOM


def test_browsers() -> None:
    for header in (CHROME_PAGE, FIREFOX_PAGE):
        result = negotiate(header, SEARCH)
        assert result is not None and str(result.media_type) == "application/dicom+json"
        assert result.q == 0.8
    assert chosen(CHROME_IMAGE, ["image/jpeg", "image/png"]) == "image/jpeg"  # image/* at 1, route order
    assert chosen(CHROME_IMAGE, ["image/png", "image/jpeg"]) == "image/png"
    assert chosen(CHROME_PAGE, ["application/xml", "application/dicom+json"]) == "application/xml"  # 0.9 > 0.8


def test_java_default_header_with_bare_star_and_short_q() -> None:
    result = negotiate(JAVA, SEARCH)
    assert result is not None and result.q == pytest.approx(0.2)
    assert chosen(JAVA, ["image/png", "image/jpeg"]) == "image/jpeg"  # named at q=1 beats */* at 0.2


def test_highest_q_wins_over_route_order() -> None:
    assert chosen("application/json;q=0.9, application/dicom+json;q=0.5", SEARCH) == "application/json"
    assert chosen("application/json, application/dicom+json", SEARCH) == "application/dicom+json"  # tie: route


def test_q_zero_excludes() -> None:
    assert chosen("application/dicom+json;q=0, */*", SEARCH) == "application/json"
    assert chosen("application/dicom+json;q=0, application/json;q=0.0", SEARCH) is None
    assert chosen("*/*;q=0", SEARCH) is None


def test_most_specific_range_sets_the_quality() -> None:
    # RFC 9110 12.5.1's example
    accept = "text/*;q=0.3, text/plain;q=0.7, text/plain;format=flowed, text/plain;format=fixed;q=0.4, */*;q=0.5"
    assert quality(accept, "text/plain;format=flowed") == 1.0
    assert quality(accept, "text/plain") == 0.7
    assert quality(accept, "text/html") == 0.3
    assert quality(accept, "image/jpeg") == 0.5
    assert quality(accept, "text/plain;format=fixed") == 0.4
    assert quality(accept, "text/plain;format=other") == 0.7  # format=... ranges do not match, text/plain does
    # a broad range cannot lift what a specific one lowered
    assert quality("multipart/related; type=application/dicom; q=0.1, multipart/*", DICOM) == 0.1


def test_transfer_syntax_requests_best_first() -> None:
    accept = (
        f"multipart/related; type=application/dicom; transfer-syntax={J2K_LOSSLESS}; q=0.9, "
        "multipart/related; type=application/dicom; transfer-syntax=*; q=0.5, "
        "*/*; q=0.1"
    )
    result = negotiate(accept, [DICOM])
    assert result is not None
    assert result.q == 0.9
    assert result.transfer_syntaxes == (J2K_LOSSLESS, "*", None)  # None: the */* range, PS3.18's default
    plain = negotiate("multipart/related; type=application/dicom", [DICOM])
    assert plain is not None and plain.transfer_syntax is None


def test_transfer_syntax_at_q_zero_refuses_that_syntax_only() -> None:
    accept = f"application/dicom; transfer-syntax={JPEG_BASELINE}; q=0, application/dicom; transfer-syntax=*; q=0.5"
    result = negotiate(accept, ["application/dicom"])
    assert result is not None
    assert result.q == 0.5
    assert result.transfer_syntaxes == ("*",)
    # the refusing range is the most specific one, yet */* still accepts the media type
    result = negotiate(f"application/dicom; transfer-syntax={JPEG_BASELINE}; q=0, */*", ["application/dicom"])
    assert result is not None
    assert (result.q, result.transfer_syntaxes) == (1.0, (None,))


def test_offer_fixing_a_transfer_syntax() -> None:
    offer = f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"
    assert chosen(f"application/octet-stream; transfer-syntax={JPEG_BASELINE}", [offer]) is None
    assert chosen(f"application/octet-stream; transfer-syntax={EXPLICIT_LE}", [offer]) == offer
    assert chosen("application/octet-stream; transfer-syntax=*", [offer]) == offer
    assert chosen("application/octet-stream", [offer]) == offer


def test_case_insensitive_names_and_types() -> None:
    assert chosen("Application/DICOM+JSON; Q=0.5", SEARCH) == "application/dicom+json"
    assert chosen('MULTIPART/Related; TYPE="Application/DICOM"', [DICOM]) == DICOM


def test_quoted_values_keep_commas_and_escapes() -> None:
    ranges = parse_accept(r'multipart/related; type="application/dicom"; x="a,b\"c"; q=0.5, application/json')
    assert [str(r.media) for r in ranges] == [
        r'multipart/related; type="application/dicom"; x="a,b\"c"',
        "application/json",
    ]
    assert [r.q for r in ranges] == [0.5, 1.0]


def test_q_values() -> None:
    assert [r.q for r in parse_accept("a/b;q=0.001, a/c;q=1.000, a/d;q=1, a/e;q=0")] == [0.001, 1.0, 1.0, 0.0]
    for bad in ("q=0.0001", "q=1.5", "q=2", "q=-1", "q=abc", "q=", "q=1.001"):
        assert parse_accept(f"a/b;{bad}, a/c") == parse_accept("a/b, a/c")[1:], bad


def test_malformed_elements_are_ignored() -> None:
    header = 'text/, /json, application, a/b/c, application/json;q=2, x/y; p="open, application/dicom+json;q=0.3'
    result = negotiate(header, SEARCH)
    # everything before the unterminated quote is junk; the quote swallows the rest of the header
    assert result is None
    result = negotiate("text/, application/json;q=0.4, */json, application/dicom+json;q=0.3", SEARCH)
    assert result is not None and str(result.media_type) == "application/json"  # */json is not a range


def test_only_junk_accepts_nothing() -> None:
    assert negotiate("garbage", SEARCH) is None
    assert negotiate("application/", SEARCH) is None


def test_accept_extensions_after_q_are_not_parameters() -> None:
    assert chosen("application/dicom+json; q=0.5; level=1", SEARCH) == "application/dicom+json"


def test_media_type_parse_and_render() -> None:
    media = parse_media_type('Multipart/Related; Type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1')
    assert media == MediaType("multipart", "related", (("type", "application/dicom"), ("transfer-syntax", EXPLICIT_LE)))
    assert str(media) == f'multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT_LE}'
    assert parse_media_type(str(media)) == media
    assert (
        str(media.with_param("transfer-syntax", "*"))
        == 'multipart/related; type="application/dicom"; transfer-syntax=*'
    )
    for bad in ("application", "a/b; c", 'a/b; c="x', "*/*", "a/b c", "a/b;=x"):
        with pytest.raises(MalformedMediaType):
            parse_media_type(bad)


def test_never_crashes_on_random_headers() -> None:
    alphabet = 'ab/*;=," \\q0.19,\t-+'
    rng = random.Random(15)
    for _ in range(3000):
        header = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        result = negotiate(header, [DICOM, *SEARCH])  # must not raise
        assert result is None or 0 < result.q <= 1


def test_a_multipart_range_of_any_part_type_matches_every_multipart_offer() -> None:
    # dicomweb-client's default Accept on retrieves: type="*/*" is no restriction.
    assert chosen('multipart/related; type="*/*"', [DICOM]) == DICOM
    assert chosen("multipart/related; type=*/*", [OCTETS, DICOM]) == OCTETS  # the route's order decides
    # ...and counts as no parameter: a range naming the type stays more specific.
    assert chosen(f'multipart/related; type="*/*", {DICOM}; q=0', [DICOM]) is None
    assert chosen(f'{OCTETS}; q=0, multipart/related; type="*/*"', [OCTETS, DICOM]) == DICOM
    assert chosen('multipart/related; type="*/*"', ["application/dicom"]) is None
