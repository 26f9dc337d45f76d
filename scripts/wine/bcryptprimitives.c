/* A stand-in for bcryptprimitives.dll, which Wine 8 lacks: Rust's std imports ProcessPrng
 * from it for randomness, and every .exe exits with 53 at start without it. Test-time only
 * (scripts/cross-check puts it into the throwaway Wine prefix); never shipped. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length); /* RtlGenRandom, advapi32 */

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
