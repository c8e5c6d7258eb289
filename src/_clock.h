/* A monotonic clock for the native training loop, which reads it every few
 * milliseconds of work to honour signals (Ctrl-C) and to return in time for
 * a progress display.  Seconds since an arbitrary start; never goes back.
 */
#ifndef CBP_CLOCK_H
#define CBP_CLOCK_H

#if defined(_WIN32)
#  define WIN32_LEAN_AND_MEAN
#  include <windows.h>
static double cbp_monotonic(void)
{
    LARGE_INTEGER now, freq;
    QueryPerformanceCounter(&now);
    QueryPerformanceFrequency(&freq);
    return (double)now.QuadPart / (double)freq.QuadPart;
}
#else
#  include <time.h>
static double cbp_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
#endif

#endif /* CBP_CLOCK_H */
