/* mmsg.c - sendmmsg and recvmmsg between two UDP sockets of its own, to compare
 * a run at home with one on another node.  Prints what each call returned. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void)
{
    int a = socket(AF_INET, SOCK_DGRAM, 0), b = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t tolen = sizeof(to);
    if (a < 0 || b < 0 || bind(b, (struct sockaddr *)&to, sizeof(to)) < 0 ||
        getsockname(b, (struct sockaddr *)&to, &tolen) < 0 ||
        connect(a, (struct sockaddr *)&to, sizeof(to)) < 0)
        return 1;

    const char *words[] = {"one", "three", "seventeen"};
    struct iovec out[3];
    struct mmsghdr send[3];
    memset(send, 0, sizeof(send));
    for (int i = 0; i < 3; i++) {
        out[i].iov_base = (void *)words[i];
        out[i].iov_len = strlen(words[i]);
        send[i].msg_hdr.msg_iov = &out[i];
        send[i].msg_hdr.msg_iovlen = 1;
    }
    int sent = sendmmsg(a, send, 3, 0);
    printf("sendmmsg: %d, lengths %u %u %u\n", sent, send[0].msg_len, send[1].msg_len,
           send[2].msg_len);

    char data[8][32];
    struct iovec in[8];
    struct sockaddr_in from[8];
    struct mmsghdr recv[8];
    memset(recv, 0, sizeof(recv));
    for (int i = 0; i < 8; i++) {
        in[i].iov_base = data[i];
        in[i].iov_len = sizeof(data[i]) - 1;
        recv[i].msg_hdr.msg_iov = &in[i];
        recv[i].msg_hdr.msg_iovlen = 1;
        recv[i].msg_hdr.msg_name = &from[i];
        recv[i].msg_hdr.msg_namelen = sizeof(from[i]);
    }
    int got = recvmmsg(b, recv, 8, MSG_WAITFORONE, NULL);
    printf("recvmmsg: %d\n", got);
    for (int i = 0; i < got; i++) {
        data[i][recv[i].msg_len] = '\0';
        printf("  %u %s from %s namelen %u\n", recv[i].msg_len, data[i],
               inet_ntoa(from[i].sin_addr), recv[i].msg_hdr.msg_namelen);
    }
    int none = recvmmsg(b, recv, 8, MSG_DONTWAIT, NULL);
    printf("recvmmsg, nothing there: %d %s\n", none, strerror(errno));
    int bad = sendmmsg(77, send, 3, 0);
    printf("sendmmsg, no socket: %d %s\n", bad, strerror(errno));
    return 0;
}
