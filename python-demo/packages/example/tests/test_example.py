import wasix_example


def test_fletcher16_of_known_inputs():
    assert wasix_example.fletcher16(b"") == 0
    assert wasix_example.fletcher16(b"abcde") == 0xC8F0
    assert wasix_example.fletcher16(bytearray(b"abcdef")) == 0x2057
    assert wasix_example.fletcher16(memoryview(b"abcdefgh")) == 0x0627


def test_pointer_bits_is_a_real_width():
    assert wasix_example.pointer_bits() in (32, 64)
