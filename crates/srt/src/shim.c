/* The statistics ladder reads, copied out of libsrt's SRT_TRACEBSTATS (496 bytes in 1.5.1, with fields added
 * by every minor release): the C compiler lays that struct out, Rust only sees the small one below, whose
 * layout is mirrored in src/lib.rs (`Stats`). */
#include <srt/srt.h>
#include <stdint.h>

struct ladder_srt_stats {
    int64_t elapsed_ms;
    double rtt_ms;
    double recv_rate_mbps;
    double bandwidth_mbps;
    uint64_t bytes_received;
    int64_t packets_received;
    int64_t packets_lost;
    int64_t packets_retransmitted;
    int64_t packets_dropped;
    int64_t packets_undecrypted;
    int64_t packets_belated;
    int64_t packets_filter_supplied;
    int32_t flight_size;
    int32_t recv_buffer_ms;
    int32_t recv_buffer_bytes;
    int32_t recv_buffer_packets;
    int32_t latency_ms;
};

int ladder_srt_stats(SRTSOCKET sock, struct ladder_srt_stats *out)
{
    SRT_TRACEBSTATS perf;
    if (srt_bistats(sock, &perf, 0, 1) == SRT_ERROR)
        return SRT_ERROR;
    out->elapsed_ms = perf.msTimeStamp;
    out->rtt_ms = perf.msRTT;
    out->recv_rate_mbps = perf.mbpsRecvRate;
    out->bandwidth_mbps = perf.mbpsBandwidth;
    out->bytes_received = perf.byteRecvTotal;
    out->packets_received = perf.pktRecvTotal;
    out->packets_lost = perf.pktRcvLossTotal;
    /* "Local" counters run from the last clear; ladder never clears, so this is the total. */
    out->packets_retransmitted = perf.pktRcvRetrans;
    out->packets_dropped = perf.pktRcvDropTotal;
    out->packets_undecrypted = perf.pktRcvUndecryptTotal;
    out->packets_belated = perf.pktRcvBelated;
    out->packets_filter_supplied = perf.pktRcvFilterSupplyTotal;
    out->flight_size = perf.pktFlightSize;
    out->recv_buffer_ms = perf.msRcvBuf;
    out->recv_buffer_bytes = perf.byteRcvBuf;
    out->recv_buffer_packets = perf.pktRcvBuf;
    out->latency_ms = perf.msRcvTsbPdDelay;
    return 0;
}

/* The option numbers, codes and layout src/ffi.rs declares by hand, checked against the headers at build
 * time: a libsrt whose values differ does not build. */
_Static_assert(SRTS_CONNECTED == 5 && SRTS_BROKEN == 6 && SRTS_CLOSING == 7 && SRTS_CLOSED == 8 && SRTS_NONEXIST == 9,
               "SRT_SOCKSTATUS");
_Static_assert(SRTO_SNDSYN == 1 && SRTO_RCVSYN == 2 && SRTO_PASSPHRASE == 26 && SRTO_PBKEYLEN == 27
                   && SRTO_CONNTIMEO == 36 && SRTO_RCVKMSTATE == 41 && SRTO_RCVLATENCY == 43 && SRTO_PEERLATENCY == 44
                   && SRTO_STREAMID == 46 && SRTO_PAYLOADSIZE == 49 && SRTO_TRANSTYPE == 50
                   && SRTO_PEERIDLETIMEO == 55 && SRTO_PACKETFILTER == 60,
               "SRT_SOCKOPT");
_Static_assert(SRTT_LIVE == 0 && SRT_KM_S_SECURED == 2, "SRT_TRANSTYPE, SRT_KM_STATE");
_Static_assert(SRT_EPOLL_IN == 0x1 && SRT_EPOLL_ERR == 0x8, "SRT_EPOLL_OPT");
_Static_assert(SRT_ECONNREJ == 1002 && SRT_ECONNLOST == 2001 && SRT_ENOCONN == 2002 && SRT_EINVSOCK == 5004
                   && SRT_EASYNCRCV == 6002 && SRT_ETIMEOUT == 6003,
               "SRT_ERRNO");
_Static_assert(SRT_REJ_BADSECRET == 10 && SRT_REJ_UNSECURE == 11 && SRT_REJ_E_SIZE == 17, "SRT_REJECT_REASON");
_Static_assert(SRT_LOGF_DISABLE_TIME == 1 && SRT_LOGF_DISABLE_THREADNAME == 2 && SRT_LOGF_DISABLE_SEVERITY == 4
                   && SRT_LOGF_DISABLE_EOL == 8,
               "SRT_LOGF");
_Static_assert(sizeof(SRT_EPOLL_EVENT) == 8, "SRT_EPOLL_EVENT");
/* Five int32 and the padding to 8-byte alignment: the same size Rust asserts for `Stats`. */
_Static_assert(sizeof(struct ladder_srt_stats) == 12 * 8 + 5 * 4 + 4, "ladder_srt_stats");
