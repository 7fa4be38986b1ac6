def test_write_read(client):
    client.write(b"/a/b", b"hello")
    assert client.read(b"/a/b") == b"hello"
    assert client.list(b"/a") == [b"b"]
