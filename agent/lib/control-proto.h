/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* Framing of the control protocol, shared by the agent and rupost-health:
 * a 4-byte big-endian length, then that many bytes of one protobuf-c message
 * (proto/control.proto). No logging here: callers decide what an error means.
 *
 * Errors:
 *   -EMSGSIZE  the announced length exceeds the limit
 *   -EBADMSG   the bytes are not a valid message of the expected type, or a
 *              complete buffer holds fewer or more bytes than announced
 *   -EPIPE     the peer closed the connection before a whole frame arrived
 *   -EAGAIN    (only from the fd helpers) the socket has nothing to give or
 *              take right now; wait for the fd and call again */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "macro.h"

#define CONTROL_FRAME_HEADER_SIZE 4U

static inline void control_message_freep(ProtobufCMessage **m) {
        if (*m)
                protobuf_c_message_free_unpacked(*m, NULL);
}

/* Packs msg behind its length header into a new buffer of *ret_size bytes. */
int control_frame_pack(const ProtobufCMessage *msg, size_t max, uint8_t **ret, size_t *ret_size);

/* Parses a length header; fails with -EMSGSIZE when it announces more than max. */
int control_frame_parse_header(const uint8_t header[static CONTROL_FRAME_HEADER_SIZE], size_t max,
                               size_t *ret_length);

/* Unpacks one whole frame (header and body, nothing after it) as a message of
 * the given type. Free the result with protobuf_c_message_free_unpacked(). */
int control_frame_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t size, size_t max,
                         ProtobufCMessage **ret);

/* Collects one frame from a byte stream that may arrive in pieces. It asks
 * for exactly the bytes it still needs, so it never consumes anything past
 * the frame. */
typedef struct ControlReader {
        size_t max;
        uint8_t header[CONTROL_FRAME_HEADER_SIZE];
        size_t n_header;
        bool have_length;
        uint8_t *body;
        size_t allocated;
        size_t length;
        size_t n_body;
} ControlReader;

#define CONTROL_READER_INIT(m) ((ControlReader) { .max = (m) })

void control_reader_done(ControlReader *r);
static inline bool control_reader_complete(const ControlReader *r) {
        return r->have_length && r->n_body == r->length;
}
/* Takes up to n bytes; *ret_used says how many were taken. Returns 1 once the
 * frame is complete, 0 while more is needed, -EMSGSIZE on a length over the
 * limit, -ENOMEM. */
int control_reader_push(ControlReader *r, const void *data, size_t n, size_t *ret_used);
/* Reads from a non-blocking fd until the frame is complete (1) or the fd has
 * nothing more right now (-EAGAIN). End of file before the end of the frame is
 * -EPIPE. */
int control_reader_read_fd(ControlReader *r, int fd);
/* Unpacks the collected frame. */
int control_reader_unpack(const ControlReader *r, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **ret);

/* Sends one packed frame through a non-blocking fd, across partial writes. */
typedef struct ControlWriter {
        uint8_t *data;
        size_t size;
        size_t done;
} ControlWriter;

void control_writer_done(ControlWriter *w);
/* Takes ownership of data. */
void control_writer_set(ControlWriter *w, uint8_t *data, size_t size);
/* Returns 1 when everything was written, -EAGAIN when the socket is full,
 * another negative errno when the peer went away. Never raises SIGPIPE. */
int control_writer_write_fd(ControlWriter *w, int fd);
