"""cffi (API mode) build of ``tre_lib.pseudonymise._fasthmac``: HMAC-SHA256 over Arrow buffers in C.

Compiled when the package is installed (the hatch hook in ``hatch_build.py`` calls :func:`compile_into`);
it needs a C compiler and OpenSSL's headers (Debian: ``libssl-dev``, installed by ``make setup``). Without
them the install still succeeds and :mod:`tre_lib.pseudonymise._core` uses its pure-Python path, which gives
the same bytes (the tests compare the two).

Why our own C loop rather than a library: no package in the registry HMACs an Arrow array in place
(docs/adr/0007-fast-hmac.md has the candidates and their figures). Per value the loop copies two
precomputed SHA-256 states (RFC 2104's ``K0 xor ipad`` and ``K0 xor opad`` blocks already absorbed), so
each ID of up to 55 bytes costs exactly two SHA-256 compressions in OpenSSL's SHA-NI code (the final
padding is written by hand; FIPS 180-4, section 5.1.1), and writes lowercase hex straight into a
preallocated Arrow data buffer. cffi releases the GIL around the call, so Python threads can hash
disjoint slices of one array at the same time.

Run ``python tre_lib/pseudonymise/_fasthmac_build.py`` to build the module in place (a development aid; an
editable install does the same).
"""

from __future__ import annotations

from pathlib import Path

MODULE = "tre_lib.pseudonymise._fasthmac"

CDEF = """
int tre_hmac_sha256_hex(const unsigned char *pads, const void *offsets, int wide_offsets,
                        const unsigned char *data, int64_t start, int64_t stop, char *out);
"""

C_SOURCE = r"""
/* SHA256_Init/Update/Final/Transform are deprecated in OpenSSL 3 in favour of EVP, but EVP_MD_CTX_copy_ex
   allocates per call, while SHA256_CTX is a plain struct we can copy; both run the same SHA-NI block
   function. */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <stdint.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

static const char TRE_HEX[] = "0123456789abcdef";

static void tre_put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Finish a SHA-256 whose first 64-byte block (a padded key) is already in ctx, over one more block that
   holds `len` <= 55 message bytes: FIPS 180-4 padding (0x80, zeros, 64-bit big-endian bit length of
   64 + len bytes) written by hand, so each value costs one SHA256_Transform and no Update/Final
   bookkeeping (about 15% faster per HMAC). Longer messages use SHA256_Update/Final. */
static void tre_last_block(SHA256_CTX *ctx, unsigned char *block, const unsigned char *msg, size_t len)
{
    uint64_t bits = (uint64_t)(64 + len) * 8;
    int k;
    if (msg != block) /* the outer hash passes the inner digest already in place */
        memcpy(block, msg, len);
    block[len] = 0x80;
    memset(block + len + 1, 0, 55 - len);
    for (k = 0; k < 8; k++)
        block[63 - k] = (unsigned char)(bits >> (8 * k));
    SHA256_Transform(ctx, block);
}

/* HMAC-SHA256 of values [start, stop) of an Arrow binary/string array, as 64 lowercase hex characters per
   value written to out[64 * (i - start)].

   pads:    128 bytes, K0 xor ipad then K0 xor opad (RFC 2104), computed by the caller.
   offsets: the array's offsets buffer (int32, or int64 if wide_offsets), already shifted by the array's
            offset; value i is data[offsets[i] .. offsets[i + 1]).
   Returns 0, or -1 if a value has a negative length (a corrupt array). Thread-safe: all state is local. */
int tre_hmac_sha256_hex(const unsigned char *pads, const void *offsets, int wide_offsets,
                        const unsigned char *data, int64_t start, int64_t stop, char *out)
{
    SHA256_CTX inner0, outer0, ctx;
    unsigned char block[64];
    const int32_t *off32 = (const int32_t *)offsets;
    const int64_t *off64 = (const int64_t *)offsets;
    int status = 0;
    int64_t i;
    int k;

    SHA256_Init(&inner0);
    SHA256_Update(&inner0, pads, 64);
    SHA256_Init(&outer0);
    SHA256_Update(&outer0, pads + 64, 64);
    for (i = start; i < stop; i++) {
        int64_t a = wide_offsets ? off64[i] : (int64_t)off32[i];
        int64_t b = wide_offsets ? off64[i + 1] : (int64_t)off32[i + 1];
        char *hex = out + 64 * (i - start);
        if (b < a) {
            status = -1;
            break;
        }
        /* Inner hash H((K0 xor ipad) || m): its 32-byte digest goes into block[0..32). */
        memcpy(&ctx, &inner0, sizeof ctx);
        if (b - a <= 55) {
            tre_last_block(&ctx, block, data + a, (size_t)(b - a));
            for (k = 0; k < 8; k++)
                tre_put_be32(block + 4 * k, ctx.h[k]);
        } else {
            SHA256_Update(&ctx, data + a, (size_t)(b - a));
            SHA256_Final(block, &ctx);
        }
        /* Outer hash H((K0 xor opad) || inner digest): always one 32-byte last block. */
        memcpy(&ctx, &outer0, sizeof ctx);
        tre_last_block(&ctx, block, block, 32);
        for (k = 0; k < 8; k++) {
            uint32_t w = ctx.h[k];
            int j;
            for (j = 0; j < 8; j++)
                hex[8 * k + j] = TRE_HEX[(w >> (28 - 4 * j)) & 15];
        }
    }
    /* The states and blocks hold key-derived material: wipe them before the stack is reused. */
    OPENSSL_cleanse(&inner0, sizeof inner0);
    OPENSSL_cleanse(&outer0, sizeof outer0);
    OPENSSL_cleanse(&ctx, sizeof ctx);
    OPENSSL_cleanse(block, sizeof block);
    return status;
}
"""


def make_ffibuilder() -> object:
    """Return the cffi ``FFI`` builder of the module (cffi is imported here: it is only needed to build)."""
    from cffi import FFI

    ffibuilder = FFI()
    ffibuilder.cdef(CDEF)
    ffibuilder.set_source(MODULE, C_SOURCE, libraries=["crypto"], extra_compile_args=["-O3"])
    return ffibuilder


def compile_into(target_dir: str | Path, tmpdir: str | Path) -> Path:
    """Compile the extension; the shared library lands under ``target_dir/tre_lib/pseudonymise/``.

    Raises whatever cffi/the compiler raises (e.g. ``cffi.VerificationError`` without OpenSSL headers);
    the install hook turns that into a warning.
    """
    import os
    import shutil

    ffibuilder = make_ffibuilder()
    built = Path(ffibuilder.compile(tmpdir=str(tmpdir)))  # type: ignore[attr-defined]
    dest = Path(target_dir) / "tre_lib" / "pseudonymise" / built.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if built.resolve() != dest.resolve():
        # Copy then rename: a running process that has the old library mapped keeps its (unlinked) file,
        # where overwriting it in place could crash that process.
        partial = dest.with_name(f".{dest.name}.partial")
        shutil.copy2(built, partial)
        os.replace(partial, dest)
    return dest


if __name__ == "__main__":
    import tempfile

    root = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory() as tmp:
        print(compile_into(root, tmp))
