"""Binary codes: packing network outputs into bits, and code files (HDF5 format v1, .npz).

>>> from hashcli.codes import CodeFile, pack_bits, write_codes, read_codes
>>> cf = CodeFile(codes=pack_bits(outputs), bits=48, labels=labels, attrs={"split": "test"})
>>> write_codes("test.h5", cf)          # atomic
>>> read_codes("test.h5").codes.shape   # (N, 6)
"""

from hashcli.codes.bits import code_bytes, pack_binary, pack_bits, unpack_bits
from hashcli.codes.store import (
    FORMAT_NAME,
    FORMAT_VERSION,
    CodeBlock,
    CodeFile,
    concatenate,
    iter_code_blocks,
    read_codes,
    write_codes,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CodeBlock",
    "CodeFile",
    "code_bytes",
    "concatenate",
    "iter_code_blocks",
    "pack_binary",
    "pack_bits",
    "read_codes",
    "unpack_bits",
    "write_codes",
]
