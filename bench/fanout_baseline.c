/*
 * fanout_baseline: the least a push node can do, as the physical-limit baseline
 * of bench/node_capacity.py. Compiled at bench time with gcc into build/bench/.
 *
 *   fanout_baseline LISTEN_IP PORT WORKERS PING_SECONDS
 *
 * It speaks the part of the push node contract a broadcast uses, byte for byte
 * as nginx-push-stream-module does (EventSource over chunked HTTP/1.1):
 *   GET  /ev/<channel>         the same response headers, then the same ": " header
 *                              chunk; the connection is held
 *   POST /pub?id=<channel>     body = message, optional Event-ID header; answers the
 *                              same JSON as push-stream
 *   GET  /channels-stats?id=   {"channel", "published_messages", "stored_messages",
 *                              "subscribers"} summed over the workers
 *   GET  /health               ok
 * and writes the same event-stream frame to every subscriber of the channel
 * ("<hex>\r\nid: ID\n\r\n<hex>\r\ndata: LINE\n...\n\r\n"), but with ONE write per
 * subscriber where push-stream makes one writev per part. Pings (": " chunks)
 * every PING_SECONDS (0 = none), like push_stream_ping_message_interval.
 *
 * The shape is nginx's, so the two are measured alike: a master forks WORKERS
 * processes, each with its own SO_REUSEPORT listening socket (nginx `reuseport`)
 * and its own epoll loop; a publish lands on one worker, which puts the frame in
 * shared memory and wakes every worker through its eventfd (nginx: shared zone +
 * a channel socketpair per worker). No message store, no Last-Event-ID, no
 * other transports: everything else a push node does is what the ratio to it
 * measures. SIGTERM to the master stops the workers.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_WORKERS 64
#define MAX_CHANNELS 64
#define CHANNEL_LEN 128
#define RING 16
#define MESSAGE_MAX (64 * 1024) /* push_stream_max_message_size */
#define FRAME_MAX (2 * MESSAGE_MAX + 256)
#define REQUEST_MAX (8 * 1024 + MESSAGE_MAX)
#define TAG_LISTEN UINT64_MAX
#define TAG_WAKE (UINT64_MAX - 1)
#define TAG_PING (UINT64_MAX - 2)

static const char PING_CHUNK[] = "3\r\n: \n\r\n";

/* --- shared between the workers (one anonymous MAP_SHARED mapping) ---------- */
struct slot {
    _Atomic uint64_t seq; /* the message's sequence number once complete */
    int channel;
    uint32_t len;
    char frame[FRAME_MAX];
};
struct shared {
    atomic_flag lock; /* channel registration and publishing */
    char channels[MAX_CHANNELS][CHANNEL_LEN];
    int channel_count;
    _Atomic long published[MAX_CHANNELS];
    _Atomic long subscribers[MAX_WORKERS][MAX_CHANNELS];
    _Atomic uint64_t last_seq;
    struct slot ring[RING];
};
static struct shared *shm;
static int workers, wake_fd[MAX_WORKERS];

/* --- one worker's connections -------------------------------------------- */
enum { REQUEST, SUBSCRIBER };
struct conn {
    int state, channel, index; /* index in its channel's subscriber array */
    size_t in_len;
    char *in;           /* request bytes (REQUEST) */
    char *out;          /* bytes the socket did not take yet */
    size_t out_len, out_sent;
};
struct channel_subscribers {
    int *fds, count, capacity;
};
static struct conn **conns; /* by fd */
static struct channel_subscribers subscribers[MAX_CHANNELS];
static int me, epfd, listen_fd;
static uint64_t delivered_seq;
static char date_header[64];
static time_t date_second;

static void lock(void) {
    while (atomic_flag_test_and_set_explicit(&shm->lock, memory_order_acquire)) {
    }
}
static void unlock(void) { atomic_flag_clear_explicit(&shm->lock, memory_order_release); }

static int find_channel(const char *name, size_t len, int create) {
    if (len == 0 || len >= CHANNEL_LEN) return -1;
    lock();
    int found = -1;
    for (int i = 0; i < shm->channel_count && found < 0; i++)
        if (strlen(shm->channels[i]) == len && memcmp(shm->channels[i], name, len) == 0) found = i;
    if (found < 0 && create && shm->channel_count < MAX_CHANNELS) {
        found = shm->channel_count++;
        memcpy(shm->channels[found], name, len);
        shm->channels[found][len] = 0;
    }
    unlock();
    return found;
}

static void refresh_date(void) {
    time_t now = time(NULL);
    if (now != date_second) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(date_header, sizeof date_header, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        date_second = now;
    }
}

static void drop(int fd) {
    struct conn *c = conns[fd];
    if (!c) return;
    if (c->state == SUBSCRIBER) {
        struct channel_subscribers *s = &subscribers[c->channel];
        int last = s->fds[--s->count];
        s->fds[c->index] = last;
        conns[last]->index = c->index;
        atomic_fetch_sub(&shm->subscribers[me][c->channel], 1);
    }
    free(c->in);
    free(c->out);
    free(c);
    conns[fd] = NULL;
    close(fd);
}

/* Writes what the socket takes; keeps the rest and asks for EPOLLOUT. */
static void send_bytes(int fd, const char *data, size_t len) {
    struct conn *c = conns[fd];
    if (c->out_len > c->out_sent) { /* already waiting: queue behind */
        c->out = realloc(c->out, c->out_len + len);
        memcpy(c->out + c->out_len, data, len);
        c->out_len += len;
        return;
    }
    ssize_t n = write(fd, data, len);
    if (n < 0) {
        if (errno != EAGAIN) {
            drop(fd);
            return;
        }
        n = 0;
    }
    if ((size_t)n < len) {
        free(c->out);
        c->out = malloc(len - (size_t)n);
        memcpy(c->out, data + n, len - (size_t)n);
        c->out_len = len - (size_t)n;
        c->out_sent = 0;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.u64 = (uint64_t)fd};
        epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
    }
}

static void flush_pending(int fd) {
    struct conn *c = conns[fd];
    while (c->out_sent < c->out_len) {
        ssize_t n = write(fd, c->out + c->out_sent, c->out_len - c->out_sent);
        if (n < 0) {
            if (errno != EAGAIN) drop(fd);
            return;
        }
        c->out_sent += (size_t)n;
    }
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_sent = 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = (uint64_t)fd};
    epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
}

static void respond(int fd, const char *status, const char *type, const char *body) {
    char head[512];
    refresh_date();
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %s\r\nServer: nginx\r\nDate: %s\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\nConnection: keep-alive\r\n\r\n",
                     status, date_header, type, strlen(body));
    send_bytes(fd, head, (size_t)n);
    if (conns[fd]) send_bytes(fd, body, strlen(body));
}

static long subscribers_of(int channel) {
    long total = 0;
    for (int w = 0; w < workers; w++) total += atomic_load(&shm->subscribers[w][channel]);
    return total;
}

static void channel_json(int fd, int channel) {
    char body[512];
    long published = atomic_load(&shm->published[channel]);
    snprintf(body, sizeof body,
             "{\"channel\": \"%s\", \"published_messages\": %ld, \"stored_messages\": %ld, "
             "\"subscribers\": %ld}\r\n",
             shm->channels[channel], published, published, subscribers_of(channel));
    respond(fd, "200 OK", "application/json", body);
}

static void subscribe(int fd, const char *name, size_t len) {
    int channel = find_channel(name, len, 1);
    if (channel < 0) {
        respond(fd, "400 Bad Request", "text/plain", "");
        return;
    }
    struct conn *c = conns[fd];
    struct channel_subscribers *s = &subscribers[channel];
    if (s->count == s->capacity) {
        s->capacity = s->capacity ? 2 * s->capacity : 1024;
        s->fds = realloc(s->fds, sizeof *s->fds * (size_t)s->capacity);
    }
    c->state = SUBSCRIBER;
    c->channel = channel;
    c->index = s->count;
    s->fds[s->count++] = fd;
    atomic_fetch_add(&shm->subscribers[me][channel], 1);
    free(c->in);
    c->in = NULL;
    char head[1024];
    refresh_date();
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: %s\r\n"
                     "Content-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n"
                     "Connection: keep-alive\r\nAccess-Control-Allow-Origin: *\r\n"
                     "Access-Control-Allow-Methods: GET\r\nAccess-Control-Allow-Headers: "
                     "If-Modified-Since,If-None-Match,Etag,Event-Id,Event-Type,Last-Event-Id\r\n"
                     "Expires: Thu, 01 Jan 1970 00:00:01 GMT\r\n"
                     "Cache-Control: no-cache, no-store, must-revalidate\r\n\r\n%s",
                     date_header, PING_CHUNK);
    send_bytes(fd, head, (size_t)n);
}

/* The frame push-stream writes for an EventSource subscriber: an id chunk
 * (when the publisher sent Event-ID), then one chunk of `data: ` lines. */
static uint32_t format_frame(char *frame, const char *id, size_t id_len, const char *body, size_t len) {
    char *p = frame;
    if (id_len) p += sprintf(p, "%zx\r\nid: %.*s\n\r\n", id_len + 5, (int)id_len, id);
    char data[FRAME_MAX];
    size_t d = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || body[i] == '\n') {
            d += (size_t)sprintf(data + d, "data: %.*s\n", (int)(i - start), body + start);
            start = i + 1;
        }
    }
    data[d++] = '\n';
    p += sprintf(p, "%zx\r\n", d);
    memcpy(p, data, d);
    p += d;
    memcpy(p, "\r\n", 2);
    return (uint32_t)(p + 2 - frame);
}

static void publish(int fd, const char *name, size_t name_len, const char *id, size_t id_len,
                    const char *body, size_t len) {
    int channel = find_channel(name, name_len, 1);
    if (channel < 0 || len > MESSAGE_MAX) {
        respond(fd, "400 Bad Request", "text/plain", "");
        return;
    }
    lock();
    uint64_t seq = atomic_load(&shm->last_seq) + 1;
    struct slot *slot = &shm->ring[seq % RING];
    slot->channel = channel;
    slot->len = format_frame(slot->frame, id, id_len, body, len);
    atomic_store(&slot->seq, seq);
    atomic_store(&shm->last_seq, seq);
    atomic_fetch_add(&shm->published[channel], 1);
    unlock();
    uint64_t one = 1;
    for (int w = 0; w < workers; w++)
        if (write(wake_fd[w], &one, sizeof one) < 0) perror("eventfd");
    channel_json(fd, channel);
}

static void deliver_new_messages(void) {
    uint64_t last = atomic_load(&shm->last_seq);
    if (last - delivered_seq > RING) delivered_seq = last - RING; /* fell behind: skip */
    while (delivered_seq < last) {
        struct slot *slot = &shm->ring[++delivered_seq % RING];
        if (atomic_load(&slot->seq) != delivered_seq) continue;
        struct channel_subscribers *s = &subscribers[slot->channel];
        for (int i = s->count - 1; i >= 0; i--) send_bytes(s->fds[i], slot->frame, slot->len);
    }
}

static void ping_all(void) {
    for (int channel = 0; channel < MAX_CHANNELS; channel++) {
        struct channel_subscribers *s = &subscribers[channel];
        for (int i = s->count - 1; i >= 0; i--) send_bytes(s->fds[i], PING_CHUNK, sizeof PING_CHUNK - 1);
    }
}

static const char *header_value(const char *head, const char *name, size_t *len) {
    size_t name_len = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, name, name_len) == 0 && line[2 + name_len] == ':') {
            const char *value = line + 3 + name_len;
            while (*value == ' ') value++;
            *len = strcspn(value, "\r\n");
            return value;
        }
    }
    *len = 0;
    return NULL;
}

/* Handles every complete request in the connection's buffer. */
static void on_request_bytes(int fd) {
    struct conn *c = conns[fd];
    while (c && c->state == REQUEST) {
        c->in[c->in_len] = 0;
        char *end = strstr(c->in, "\r\n\r\n");
        if (!end) return;
        size_t head_len = (size_t)(end + 4 - c->in), body_len = 0;
        const char *length = header_value(c->in, "Content-Length", &body_len);
        body_len = length ? strtoul(length, NULL, 10) : 0;
        if (head_len + body_len > REQUEST_MAX) {
            drop(fd);
            return;
        }
        if (c->in_len < head_len + body_len) return;
        size_t path_len = strcspn(c->in, "\r\n");
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)(path_len < 511 ? path_len : 511), c->in);
        char *path = strchr(line, ' ');
        if (!path) {
            drop(fd);
            return;
        }
        *path++ = 0;
        char *space = strchr(path, ' ');
        if (space) *space = 0;
        if (strcmp(line, "GET") == 0 && strncmp(path, "/ev/", 4) == 0) {
            subscribe(fd, path + 4, strlen(path + 4));
            return; /* a subscriber sends nothing more we read */
        }
        if (strcmp(line, "POST") == 0 && strncmp(path, "/pub?id=", 8) == 0) {
            size_t id_len;
            const char *id = header_value(c->in, "Event-ID", &id_len);
            publish(fd, path + 8, strlen(path + 8), id, id_len, c->in + head_len, body_len);
        } else if (strcmp(line, "GET") == 0 && strncmp(path, "/channels-stats?id=", 19) == 0) {
            int channel = find_channel(path + 19, strlen(path + 19), 0);
            if (channel < 0) respond(fd, "404 Not Found", "text/plain", "");
            else channel_json(fd, channel);
        } else if (strcmp(line, "GET") == 0 && strcmp(path, "/health") == 0) {
            respond(fd, "200 OK", "text/plain", "ok\n");
        } else {
            respond(fd, "404 Not Found", "text/plain", "");
        }
        c = conns[fd];
        if (!c) return;
        memmove(c->in, c->in + head_len + body_len, c->in_len - head_len - body_len);
        c->in_len -= head_len + body_len;
    }
}

static void on_readable(int fd) {
    struct conn *c = conns[fd];
    if (c->state == SUBSCRIBER) {
        char sink[512];
        ssize_t n = read(fd, sink, sizeof sink);
        if (n == 0 || (n < 0 && errno != EAGAIN)) drop(fd);
        return;
    }
    for (;;) {
        ssize_t n = read(fd, c->in + c->in_len, REQUEST_MAX - c->in_len);
        if (n > 0) {
            c->in_len += (size_t)n;
            if (c->in_len == REQUEST_MAX) break;
            continue;
        }
        if (n == 0 || errno != EAGAIN) {
            drop(fd);
            return;
        }
        break;
    }
    on_request_bytes(fd);
}

static void accept_all(void) {
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* nginx: tcp_nodelay on */
        struct conn *c = calloc(1, sizeof *c);
        c->in = malloc(REQUEST_MAX + 1);
        conns[fd] = c;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = (uint64_t)fd};
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    }
}

static int open_listener(const char *ip, int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &address.sin_addr);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&address, sizeof address) < 0 || listen(fd, 65535) < 0) {
        perror("listen");
        exit(1);
    }
    return fd;
}

static void worker(int index, const char *ip, int port, int ping_seconds) {
    me = index;
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    struct rlimit files;
    getrlimit(RLIMIT_NOFILE, &files);
    conns = calloc(files.rlim_cur, sizeof *conns);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    listen_fd = open_listener(ip, port);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_LISTEN};
    epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev);
    ev = (struct epoll_event){.events = EPOLLIN, .data.u64 = TAG_WAKE};
    epoll_ctl(epfd, EPOLL_CTL_ADD, wake_fd[me], &ev);
    int ping_fd = -1;
    if (ping_seconds > 0) {
        ping_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        struct itimerspec every = {{ping_seconds, 0}, {ping_seconds, 0}};
        timerfd_settime(ping_fd, 0, &every, NULL);
        ev = (struct epoll_event){.events = EPOLLIN, .data.u64 = TAG_PING};
        epoll_ctl(epfd, EPOLL_CTL_ADD, ping_fd, &ev);
    }
    delivered_seq = atomic_load(&shm->last_seq);
    struct epoll_event events[512];
    for (;;) {
        int n = epoll_wait(epfd, events, 512, -1);
        for (int e = 0; e < n; e++) {
            uint64_t tag = events[e].data.u64, count;
            if (tag == TAG_LISTEN) {
                accept_all();
            } else if (tag == TAG_WAKE) {
                if (read(wake_fd[me], &count, sizeof count) > 0) deliver_new_messages();
            } else if (tag == TAG_PING) {
                if (read(ping_fd, &count, sizeof count) > 0) ping_all();
            } else if (conns[tag]) {
                int fd = (int)tag;
                if (events[e].events & (EPOLLERR | EPOLLHUP)) {
                    drop(fd);
                    continue;
                }
                if (events[e].events & EPOLLOUT) flush_pending(fd);
                if (conns[fd] && (events[e].events & (EPOLLIN | EPOLLRDHUP))) on_readable(fd);
            }
        }
    }
}

static pid_t children[MAX_WORKERS];
static void stop_children(int sig) {
    (void)sig;
    for (int w = 0; w < workers; w++)
        if (children[w] > 0) kill(children[w], SIGTERM);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s LISTEN_IP PORT WORKERS PING_SECONDS\n", argv[0]);
        return 2;
    }
    workers = atoi(argv[3]);
    if (workers < 1 || workers > MAX_WORKERS) {
        fprintf(stderr, "WORKERS: 1..%d\n", MAX_WORKERS);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    shm = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    for (int w = 0; w < workers; w++) wake_fd[w] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    for (int w = 0; w < workers; w++) {
        children[w] = fork();
        if (children[w] == 0) worker(w, argv[1], atoi(argv[2]), atoi(argv[4]));
    }
    signal(SIGTERM, stop_children);
    signal(SIGINT, stop_children);
    int status;
    while (wait(&status) > 0 || errno == EINTR) {
    }
    return 0;
}
