/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "control-proto.h"

/* The body buffer grows with what actually arrived, not with what the peer
 * announced, so a peer that announces the maximum and then stalls costs no
 * more memory than it sent. */
#define CONTROL_READER_CHUNK (16U * 1024U)

int control_frame_pack(const ProtobufCMessage *msg, size_t max, uint8_t **ret, size_t *ret_size) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t n;

        assert_return(msg, -EINVAL);
        assert_return(ret, -EINVAL);
        assert_return(ret_size, -EINVAL);

        n = protobuf_c_message_get_packed_size(msg);
        if (n > max || n > UINT32_MAX)
                return -EMSGSIZE;

        buf = malloc(CONTROL_FRAME_HEADER_SIZE + n);
        if (!buf)
                return -ENOMEM;
        buf[0] = (uint8_t) (n >> 24);
        buf[1] = (uint8_t) (n >> 16);
        buf[2] = (uint8_t) (n >> 8);
        buf[3] = (uint8_t) n;
        if (protobuf_c_message_pack(msg, buf + CONTROL_FRAME_HEADER_SIZE) != n)
                return -EIO;

        *ret = TAKE_PTR(buf);
        *ret_size = CONTROL_FRAME_HEADER_SIZE + n;
        return 0;
}

int control_frame_parse_header(const uint8_t header[static CONTROL_FRAME_HEADER_SIZE], size_t max,
                               size_t *ret_length) {
        uint32_t n;

        assert_return(ret_length, -EINVAL);

        n = (uint32_t) header[0] << 24 | (uint32_t) header[1] << 16 | (uint32_t) header[2] << 8 | header[3];
        if (n > max)
                return -EMSGSIZE;
        *ret_length = n;
        return 0;
}

static int unpack_body(const ProtobufCMessageDescriptor *desc, const uint8_t *body, size_t n,
                       ProtobufCMessage **ret) {
        static const uint8_t empty[1];
        ProtobufCMessage *m;

        /* A proto3 message whose fields all hold their defaults packs to zero
         * bytes: a STATUS request is exactly that. */
        m = protobuf_c_message_unpack(desc, NULL, n, n > 0 ? body : empty);
        if (!m)
                return -EBADMSG;
        *ret = m;
        return 0;
}

int control_frame_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t size, size_t max,
                         ProtobufCMessage **ret) {
        size_t n;
        int r;

        assert_return(desc, -EINVAL);
        assert_return(data || size == 0, -EINVAL);
        assert_return(ret, -EINVAL);

        if (size < CONTROL_FRAME_HEADER_SIZE)
                return -EBADMSG;
        r = control_frame_parse_header(data, max, &n);
        if (r < 0)
                return r;
        if (size - CONTROL_FRAME_HEADER_SIZE != n)
                return -EBADMSG;

        return unpack_body(desc, data + CONTROL_FRAME_HEADER_SIZE, n, ret);
}

void control_reader_done(ControlReader *r) {
        free(r->body);
        *r = CONTROL_READER_INIT(r->max);
}

/* Where the next bytes go and how many are still wanted there; makes room in
 * the body buffer as needed. */
static int reader_want(ControlReader *r, uint8_t **ret_p, size_t *ret_n) {
        if (!r->have_length) {
                *ret_p = r->header + r->n_header;
                *ret_n = CONTROL_FRAME_HEADER_SIZE - r->n_header;
                return 0;
        }

        if (r->n_body == r->allocated && r->n_body < r->length) {
                size_t want = MIN(r->length, MAX(CONTROL_READER_CHUNK, 2 * r->allocated));
                uint8_t *b = realloc(r->body, want);
                if (!b)
                        return -ENOMEM;
                r->body = b;
                r->allocated = want;
        }
        *ret_p = r->body + r->n_body;
        *ret_n = r->allocated - r->n_body;
        return 0;
}

static int reader_advance(ControlReader *r, size_t n) {
        int k;

        if (!r->have_length) {
                r->n_header += n;
                if (r->n_header < CONTROL_FRAME_HEADER_SIZE)
                        return 0;
                k = control_frame_parse_header(r->header, r->max, &r->length);
                if (k < 0)
                        return k;
                r->have_length = true;
        } else
                r->n_body += n;

        return control_reader_complete(r);
}

int control_reader_push(ControlReader *r, const void *data, size_t n, size_t *ret_used) {
        const uint8_t *p = data;
        size_t used = 0;
        int k = 0;

        assert_return(r, -EINVAL);
        assert_return(data || n == 0, -EINVAL);

        while (!control_reader_complete(r)) {
                uint8_t *dst;
                size_t want;

                k = reader_want(r, &dst, &want);
                if (k < 0)
                        break;
                want = MIN(want, n - used);
                if (want > 0)
                        memcpy(dst, p + used, want);
                used += want;
                k = reader_advance(r, want);
                if (k != 0 || used == n)
                        break;
        }

        if (ret_used)
                *ret_used = used;
        if (k < 0)
                return k;
        return control_reader_complete(r);
}

int control_reader_read_fd(ControlReader *r, int fd) {
        assert_return(r, -EINVAL);
        assert_return(fd >= 0, -EBADF);

        while (!control_reader_complete(r)) {
                uint8_t *dst;
                size_t want;
                ssize_t l;
                int k;

                k = reader_want(r, &dst, &want);
                if (k < 0)
                        return k;
                l = read(fd, dst, want);
                if (l < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EWOULDBLOCK)
                                return -EAGAIN;
                        return -errno;
                }
                if (l == 0)
                        return -EPIPE;
                k = reader_advance(r, (size_t) l);
                if (k < 0)
                        return k;
        }
        return 1;
}

int control_reader_unpack(const ControlReader *r, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **ret) {
        assert_return(r, -EINVAL);
        assert_return(desc, -EINVAL);
        assert_return(ret, -EINVAL);
        assert_return(control_reader_complete(r), -EAGAIN);

        return unpack_body(desc, r->body, r->length, ret);
}

void control_writer_done(ControlWriter *w) {
        free(w->data);
        *w = (ControlWriter) {};
}

void control_writer_set(ControlWriter *w, uint8_t *data, size_t size) {
        control_writer_done(w);
        *w = (ControlWriter) { .data = data, .size = size };
}

int control_writer_write_fd(ControlWriter *w, int fd) {
        assert_return(w, -EINVAL);
        assert_return(fd >= 0, -EBADF);

        while (w->done < w->size) {
                ssize_t l = send(fd, w->data + w->done, w->size - w->done, MSG_NOSIGNAL);
                if (l < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EWOULDBLOCK)
                                return -EAGAIN;
                        return -errno;
                }
                w->done += (size_t) l;
        }
        return 1;
}
