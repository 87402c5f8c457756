/*
 * ev_client: many EventSource subscribers in one process (epoll, non-blocking),
 * for bench/node_capacity.py. Compiled at bench time with gcc into build/bench/.
 *
 *   ev_client DEST_IP PORT SOURCE_IP COUNT PATH INFLIGHT MESSAGES
 *
 * Opens COUNT connections from SOURCE_IP to DEST_IP:PORT (at most INFLIGHT
 * connecting at once), sends `GET PATH HTTP/1.1` with Accept: text/event-stream
 * on each and keeps it open. Once every connection has its 200 response headers
 * (or failed) it prints `ready OK FAILED FIRST_ERROR`.
 *
 * Broadcast messages carry `data: bench K NANOSECONDS ...` (K = 0..MESSAGES-1,
 * NANOSECONDS = CLOCK_REALTIME at publish). For every connection and message the
 * delay publish -> read() is recorded in microseconds. Once every open connection
 * has message K it prints `done K`. When every open connection has every message,
 * or when stdin says `report`, it prints
 *   bytes B            bytes read since `ready`
 *   closed C           connections the node closed after `ready`
 *   lat K N v1 .. vN   one line per message: the delays of the N receivers
 *   end
 * and keeps holding the connections until stdin says `quit` or closes. It then
 * resets them (SO_LINGER 0): no TIME_WAIT sockets, and the firewall's connection
 * tracking forgets them in seconds instead of two minutes (nf_conntrack's table
 * would otherwise fill up over back-to-back runs and drop new connections).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum { FREE, CONNECTING, HEADERS, OPEN, DEAD };
#define LINE_MAX_LEN 80
#define HEADER_MAX 2048
#define STDIN_TAG UINT32_MAX

struct conn {
    int fd;
    unsigned char state;
    unsigned short len; /* bytes in line (OPEN) or in header (HEADERS) */
    char line[LINE_MAX_LEN];
    char *header;
};

static struct conn *conns;
static int count, messages, epfd;
static int64_t *latency_us; /* [message * count + connection], -1 = not yet */
static long *received_of; /* [message]: connections that have it */
static long received, open_conns, failed, closed_after_ready;
static unsigned long long bytes_after_ready;
static int ready;
static char first_error[64] = "-";
static struct sockaddr_in dest, source;
static char request[512];
static size_t request_len;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void fail(int i, const char *why) {
    struct conn *c = &conns[i];
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    free(c->header);
    c->header = NULL;
    if (c->state == OPEN) {
        open_conns--;
        if (ready) closed_after_ready++;
        else failed++;
    } else {
        failed++;
    }
    c->state = DEAD;
    if (strcmp(first_error, "-") == 0) snprintf(first_error, sizeof first_error, "%s", why);
}

static int start(int i) {
    struct conn *c = &conns[i];
    int one = 1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        c->state = DEAD;
        failed++;
        snprintf(first_error, sizeof first_error, "socket:%s", strerror(errno));
        return -1;
    }
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(c->fd, (struct sockaddr *)&source, sizeof source) < 0 ||
        (connect(c->fd, (struct sockaddr *)&dest, sizeof dest) < 0 && errno != EINPROGRESS)) {
        char why[64];
        snprintf(why, sizeof why, "connect:%s", strerror(errno));
        c->state = CONNECTING;
        fail(i, why);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)i};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    c->state = CONNECTING;
    return 0;
}

static void on_line(int i, const char *line, size_t len, int64_t at) {
    static const char marker[] = "data: bench ";
    if (len < sizeof marker - 1 || memcmp(line, marker, sizeof marker - 1) != 0) return;
    char copy[LINE_MAX_LEN + 1];
    memcpy(copy, line, len);
    copy[len] = 0;
    char *end;
    long k = strtol(copy + sizeof marker - 1, &end, 10);
    long long sent = strtoll(end, NULL, 10);
    if (k < 0 || k >= messages || sent <= 0) return;
    int64_t *slot = &latency_us[(size_t)k * count + i];
    if (*slot < 0) {
        *slot = (at - sent) / 1000;
        received++;
        received_of[k]++;
    }
}

static void on_body(int i, const char *data, size_t n, int64_t at) {
    struct conn *c = &conns[i];
    for (size_t j = 0; j < n; j++) {
        char ch = data[j];
        if (ch == '\n') {
            size_t len = c->len;
            if (len && c->line[len - 1] == '\r') len--;
            on_line(i, c->line, len, at);
            c->len = 0;
        } else if (c->len < LINE_MAX_LEN) {
            c->line[c->len++] = ch;
        }
    }
}

static void on_headers(int i, const char *data, size_t n, int64_t at) {
    struct conn *c = &conns[i];
    if (!c->header) c->header = malloc(HEADER_MAX);
    size_t room = HEADER_MAX - 1 - c->len;
    size_t take = n < room ? n : room;
    memcpy(c->header + c->len, data, take);
    c->len += take;
    c->header[c->len] = 0;
    char *end = strstr(c->header, "\r\n\r\n");
    if (!end) {
        if (c->len >= HEADER_MAX - 1) fail(i, "headers too long");
        return;
    }
    if (strncmp(c->header, "HTTP/1.1 200", 12) != 0) {
        char why[64];
        snprintf(why, sizeof why, "status:%.12s", c->header + 9);
        fail(i, why);
        return;
    }
    size_t header_len = (size_t)(end + 4 - c->header);
    size_t rest_in_buffer = c->len - header_len;
    char rest[HEADER_MAX];
    memcpy(rest, end + 4, rest_in_buffer);
    /* bytes of this read that did not fit in the header buffer */
    size_t rest_in_data = n - take;
    free(c->header);
    c->header = NULL;
    c->len = 0;
    c->state = OPEN;
    open_conns++;
    on_body(i, rest, rest_in_buffer, at);
    on_body(i, data + take, rest_in_data, at);
}

static void on_event(uint32_t i, uint32_t events) {
    static char buffer[65536];
    struct conn *c = &conns[i];
    if (c->state == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            char why[64];
            snprintf(why, sizeof why, "connect:%s", strerror(err));
            fail((int)i, why);
            return;
        }
        if (!(events & EPOLLOUT)) return;
        if (send(c->fd, request, request_len, MSG_NOSIGNAL) != (ssize_t)request_len) {
            fail((int)i, "send");
            return;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->state = HEADERS;
        c->len = 0;
        return;
    }
    for (;;) {
        ssize_t n = read(c->fd, buffer, sizeof buffer);
        if (n > 0) {
            int64_t at = now_ns();
            if (ready) bytes_after_ready += (unsigned long long)n;
            if (c->state == HEADERS) on_headers((int)i, buffer, (size_t)n, at);
            else on_body((int)i, buffer, (size_t)n, at);
            if (c->state == DEAD || (size_t)n < sizeof buffer) return;
        } else if (n == 0) {
            fail((int)i, "closed by node");
            return;
        } else {
            if (errno != EAGAIN && errno != EINTR) fail((int)i, "read");
            return;
        }
    }
}

static int quit(void) {
    struct linger reset = {.l_onoff = 1, .l_linger = 0};
    for (int i = 0; i < count; i++) {
        if (conns[i].fd >= 0) {
            setsockopt(conns[i].fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
            close(conns[i].fd);
        }
    }
    return 0;
}

static void report(void) {
    printf("bytes %llu\nclosed %ld\n", bytes_after_ready, closed_after_ready);
    for (int k = 0; k < messages; k++) {
        long n = 0;
        for (int i = 0; i < count; i++)
            if (latency_us[(size_t)k * count + i] >= 0) n++;
        printf("lat %d %ld", k, n);
        for (int i = 0; i < count; i++) {
            int64_t v = latency_us[(size_t)k * count + i];
            if (v >= 0) printf(" %lld", (long long)v);
        }
        printf("\n");
    }
    printf("end\n");
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: %s DEST_IP PORT SOURCE_IP COUNT PATH INFLIGHT MESSAGES\n", argv[0]);
        return 2;
    }
    dest.sin_family = AF_INET;
    dest.sin_port = htons((uint16_t)atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &dest.sin_addr);
    source.sin_family = AF_INET;
    inet_pton(AF_INET, argv[3], &source.sin_addr);
    count = atoi(argv[4]);
    int inflight = atoi(argv[6]);
    messages = atoi(argv[7]);
    request_len = (size_t)snprintf(request, sizeof request,
                                   "GET %s HTTP/1.1\r\nHost: %s:%s\r\nAccept: text/event-stream\r\n"
                                   "Cache-Control: no-cache\r\n\r\n",
                                   argv[5], argv[1], argv[2]);
    conns = calloc((size_t)count, sizeof *conns);
    latency_us = malloc(sizeof *latency_us * (size_t)count * (size_t)(messages ? messages : 1));
    for (size_t j = 0; j < (size_t)count * (size_t)messages; j++) latency_us[j] = -1;
    for (int i = 0; i < count; i++) conns[i].fd = -1;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event stdin_ev = {.events = EPOLLIN, .data.u32 = STDIN_TAG};
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &stdin_ev);

    received_of = calloc((size_t)(messages ? messages : 1), sizeof *received_of);
    int next = 0, reported = 0, next_done = 0;
    struct epoll_event events[1024];
    for (;;) {
        long pending = next - open_conns - failed - closed_after_ready;
        while (next < count && pending < inflight) {
            start(next++);
            pending++;
        }
        if (!ready && next == count && pending == 0) {
            ready = 1;
            printf("ready %ld %ld %s\n", open_conns, failed, first_error);
            fflush(stdout);
        }
        while (ready && next_done < messages && received_of[next_done] >= open_conns) {
            printf("done %d\n", next_done++);
            fflush(stdout);
        }
        if (ready && !reported && messages && received >= open_conns * (long)messages) {
            report();
            reported = 1;
        }
        int n = epoll_wait(epfd, events, 1024, 100);
        for (int e = 0; e < n; e++) {
            if (events[e].data.u32 == STDIN_TAG) {
                char command[64];
                ssize_t got = read(0, command, sizeof command - 1);
                if (got <= 0) return quit();
                command[got] = 0;
                if (strstr(command, "report") && !reported) {
                    report();
                    reported = 1;
                }
                if (strstr(command, "quit")) return quit();
            } else {
                on_event(events[e].data.u32, events[e].events);
            }
        }
    }
}
