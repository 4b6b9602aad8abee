/*
 * pnet: a tiny, statically linked UDP/TCP sender and receiver for podcap's test pods.
 *
 * busybox `nc` has no UDP, and test traffic must be bounded and countable, so the test pod image
 * carries this instead (/bin/pnet). Numeric IPv4 addresses only (no resolver in a static binary).
 *
 *   pnet send udp|tcp HOST PORT [-n COUNT] [-s SIZE] [-i INTERVAL_MS]
 *       UDP: COUNT datagrams of SIZE bytes. TCP: one connection, COUNT writes of SIZE bytes
 *       (TCP_NODELAY, so with an interval each write is its own segment), then a clean close.
 *       Defaults: COUNT 10, SIZE 64, INTERVAL_MS 100. Prints "sent N".
 *   pnet listen udp|tcp PORT [-n COUNT]
 *       UDP: receive COUNT datagrams (0 = forever). TCP: accept COUNT connections (0 = forever)
 *       and read each to EOF. Prints one line per datagram / connection and "received N".
 *
 * Exit status: 0 on success, 1 on a network error, 2 on bad usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void usage(void) {
    fprintf(stderr,
            "usage: pnet send udp|tcp HOST PORT [-n COUNT] [-s SIZE] [-i INTERVAL_MS]\n"
            "       pnet listen udp|tcp PORT [-n COUNT]\n");
    exit(2);
}

static long number(const char *s, long min, long max) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *s == '\0' || *end != '\0' || v < min || v > max) usage();
    return v;
}

static void die(const char *what) {
    fprintf(stderr, "pnet: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int send_main(int tcp, const char *host, long port, long count, long size, long interval) {
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    if (inet_pton(AF_INET, host, &to.sin_addr) != 1) {
        fprintf(stderr, "pnet: not a numeric IPv4 address: %s\n", host);
        return 2;
    }
    int fd = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    if (tcp) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (connect(fd, (struct sockaddr *)&to, sizeof to) != 0) die("connect");
    char *buf = malloc((size_t)size ? (size_t)size : 1);
    if (!buf) die("malloc");
    long sent = 0;
    for (long i = 0; i < count; i++) {
        memset(buf, 'a' + (int)(i % 26), (size_t)size);
        if (size >= 8) snprintf(buf, 8, "%07ld", i % 10000000);
        ssize_t n = send(fd, buf, (size_t)size, 0);
        if (n < 0) die("send");
        if (n != size) {
            fprintf(stderr, "pnet: short send (%zd of %ld bytes)\n", n, size);
            return 1;
        }
        sent++;
        if (interval > 0 && i + 1 < count) sleep_ms(interval);
    }
    if (tcp && shutdown(fd, SHUT_WR) != 0) die("shutdown");
    if (tcp) { /* wait for the peer's close so the connection ends cleanly (FIN both ways) */
        char tmp[256];
        while (recv(fd, tmp, sizeof tmp, 0) > 0) {
        }
    }
    close(fd);
    printf("sent %ld\n", sent);
    return 0;
}

static int listen_main(int tcp, long port, long count) {
    int fd = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in me = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port),
                             .sin_addr.s_addr = htonl(INADDR_ANY)};
    if (bind(fd, (struct sockaddr *)&me, sizeof me) != 0) die("bind");
    if (tcp && listen(fd, 16) != 0) die("listen");
    setvbuf(stdout, NULL, _IOLBF, 0);
    static char buf[65536];
    long got = 0;
    while (count == 0 || got < count) {
        struct sockaddr_in from;
        socklen_t len = sizeof from;
        char addr[INET_ADDRSTRLEN];
        if (!tcp) {
            ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
            if (n < 0) die("recvfrom");
            inet_ntop(AF_INET, &from.sin_addr, addr, sizeof addr);
            printf("udp %zd bytes from %s:%u\n", n, addr, ntohs(from.sin_port));
        } else {
            int c = accept(fd, (struct sockaddr *)&from, &len);
            if (c < 0) die("accept");
            long total = 0;
            ssize_t n;
            while ((n = recv(c, buf, sizeof buf, 0)) > 0) total += n;
            close(c);
            inet_ntop(AF_INET, &from.sin_addr, addr, sizeof addr);
            printf("tcp %ld bytes from %s:%u\n", total, addr, ntohs(from.sin_port));
        }
        got++;
    }
    printf("received %ld\n", got);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) usage();
    int sending = strcmp(argv[1], "send") == 0;
    if (!sending && strcmp(argv[1], "listen") != 0) usage();
    int tcp = strcmp(argv[2], "tcp") == 0;
    if (!tcp && strcmp(argv[2], "udp") != 0) usage();
    const char *host = NULL;
    int i = 3;
    if (sending) {
        if (argc < 5) usage();
        host = argv[i++];
    }
    long port = number(argv[i++], 1, 65535);
    long count = sending ? 10 : 0, size = 64, interval = 100;
    for (; i < argc; i++) {
        if (i + 1 >= argc) usage();
        if (strcmp(argv[i], "-n") == 0) count = number(argv[++i], 0, 100000000);
        else if (sending && strcmp(argv[i], "-s") == 0) size = number(argv[++i], 0, 65000);
        else if (sending && strcmp(argv[i], "-i") == 0) interval = number(argv[++i], 0, 3600000);
        else usage();
    }
    return sending ? send_main(tcp, host, port, count, size, interval) : listen_main(tcp, port, count);
}
