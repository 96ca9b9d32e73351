"""HTTP/1.1 messages without sockets: URL splitting, request bytes, and the response parser
fed whole and one byte at a time."""

from __future__ import annotations

import pytest

from probes.httpmessage import USER_AGENT, ParseError, Request, ResponseParser, Url

CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
           b"5;name=v\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: t\r\n\r\n")


def feed(parser: ResponseParser, data: bytes, step: int) -> bool:
    done = False
    for i in range(0, len(data), step):
        assert not done, "the parser finished before the last byte"
        done = parser.feed(data[i: i + step])
    return done


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_chunked_in_any_split(step: int) -> None:
    parser = ResponseParser()
    assert feed(parser, CHUNKED, step)
    response = parser.response
    assert response is not None
    assert (response.status, response.reason, response.body) == (200, "OK", b"hello world")
    assert response.body_bytes == 11
    assert response.header("X-A") == "1"
    assert [v for n, v in response.headers if n == "x-a"] == ["1", "2"]


@pytest.mark.parametrize("step", [1, 5, 1000])
def test_content_length_and_interim_answers(step: int) -> None:
    data = (b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope")
    parser = ResponseParser()
    assert feed(parser, data, step)
    assert parser.response is not None
    assert (parser.response.status, parser.response.body) == (404, b"nope")


def test_until_close_ends_at_eof_and_the_stored_body_is_capped() -> None:
    parser = ResponseParser(max_body=4)
    assert not parser.feed(b"HTTP/1.0 200 OK\r\n\r\n0123456789")
    assert not parser.feed(b"abc")
    assert parser.eof()
    response = parser.response
    assert response is not None
    assert (response.body, response.body_bytes, response.truncated) == (b"0123", 13, True)


def test_eof_before_the_end_is_not_complete() -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert not parser.eof()


@pytest.mark.parametrize("data", [
    b"SSH-2.0-OpenSSH_9.6\r\n",
    b"HTTP/2 200\r\n\r\n",
    b"HTTP/1.1 20 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * 70000,
])
def test_garbage_is_a_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError):
        ResponseParser().feed(data)


def test_url_parts() -> None:
    url = Url("HTTPS://Node.Example.com:8443/rpc/v1?x=1#frag")
    assert (url.scheme, url.host, url.port, url.is_ip) == ("https", "node.example.com", 8443,
                                                           False)
    assert (url.authority, url.target) == ("node.example.com:8443", "/rpc/v1?x=1")
    v6 = Url("http://[::1]/")
    assert (v6.host, v6.authority, v6.is_ip, v6.port) == ("::1", "[::1]", True, 80)
    assert Url("http://example.com/a b/é").target == "/a%20b/%C3%A9"


@pytest.mark.parametrize("text", ["ftp://x/", "http://", "http://u:p@x/", "http://x:99999/"])
def test_bad_urls(text: str) -> None:
    with pytest.raises(ValueError):
        Url(text)


def test_request_bytes() -> None:
    request = Request(Url("http://example.com:8080/p?q=1"), "POST",
                      [("X-Token", "t"), ("user-agent", "mine")], b"{}")
    assert request.wire == (b"POST /p?q=1 HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\n"
                            b"X-Token: t\r\nuser-agent: mine\r\nContent-Length: 2\r\n"
                            b"Connection: close\r\n\r\n{}")
    plain = Request(Url("http://example.com/"))
    assert plain.wire == (b"GET / HTTP/1.1\r\nHost: example.com\r\n"
                          b"User-Agent: " + USER_AGENT.encode() + b"\r\nAccept: */*\r\n"
                          b"Connection: close\r\n\r\n")
    with pytest.raises(ValueError):
        Request(Url("http://example.com/"), headers=[("X", "a\r\nEvil: 1")])


def test_redirects() -> None:
    post = Request(Url("http://a.example/x/y"), "POST", [("Authorization", "s")], b"b")
    same = post.redirect("z?n=1", 307)
    assert (same.url.text, same.method, same.body) == ("http://a.example/x/z?n=1", "POST", b"b")
    assert same.headers == (("Authorization", "s"),)
    away = post.redirect("https://b.example/", 303)
    assert (away.method, away.body, away.headers) == ("GET", b"", ())
    assert post.redirect("/top", 302).method == "GET"
