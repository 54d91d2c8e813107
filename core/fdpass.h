/* fdpass.h — passing accepted sockets from the master to a worker over a
 * SOCK_SEQPACKET socketpair with SCM_RIGHTS (unix(7), cmsg(3)). */
#ifndef SW_CORE_FDPASS_H
#define SW_CORE_FDPASS_H

/* Send buffer asked for the master's end (bytes). */
#define SW_FDPASS_SNDBUF (1 << 20)

/* Make the pair: sv[0] stays in the master, sv[1] goes to the worker.
 * Both CLOEXEC; the master's end non-blocking, its send buffer (and the
 * worker end's receive buffer) SW_FDPASS_SNDBUF. 0 or SW_ERR (logged). */
int sw_fdpass_pair(int sv[2]);

/* Send fd over sock. 0; SW_EAGAIN when the channel is full (the caller
 * tries another worker or closes the client); SW_ECLOSED when the worker
 * is gone; SW_ERR otherwise (logged). The caller still owns fd. */
int sw_fdpass_send(int sock, int fd);

/* Receive one fd. Returns the fd (>= 0, CLOEXEC), SW_EAGAIN when nothing
 * is waiting, SW_ECLOSED when the master's end closed, SW_ERR (logged). */
int sw_fdpass_recv(int sock);

#endif
