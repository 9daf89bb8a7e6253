/*
 * kexec_load: loads a kdump capture kernel with kexec_file_load(2), for the harness's kdump
 * guest (see kdump_initramfs.py and capture-kdump.sh).
 *
 * Why: busybox has no kexec applet, and Debian's kexec-tools pulls in Xen libraries. This is
 * all the harness needs: one system call with KEXEC_FILE_ON_CRASH, so that the next panic
 * boots KERNEL (with INITRD and CMDLINE) in the crashkernel= reservation.
 *
 * Usage: kexec_load KERNEL INITRD CMDLINE
 * Built by capture-kdump.sh with `gcc -static -O2`. Exit status 0 when loaded; 1 (with the
 * errno text on stderr) when not; 2 on a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_kexec_file_load
#define SYS_kexec_file_load 320 /* x86_64 */
#endif
#define KEXEC_FILE_ON_CRASH 0x2UL /* the uapi flag value: load into the crash reservation */

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s KERNEL INITRD CMDLINE\n", argv[0]);
        return 2;
    }
    int kernel_fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (kernel_fd < 0) {
        fprintf(stderr, "kexec_load: open %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    int initrd_fd = open(argv[2], O_RDONLY | O_CLOEXEC);
    if (initrd_fd < 0) {
        fprintf(stderr, "kexec_load: open %s: %s\n", argv[2], strerror(errno));
        return 1;
    }
    const char *cmdline = argv[3];
    /* The length counts the terminating NUL. */
    long rc = syscall(SYS_kexec_file_load, kernel_fd, initrd_fd, strlen(cmdline) + 1, cmdline,
                      KEXEC_FILE_ON_CRASH);
    if (rc != 0) {
        int e = errno;
        fprintf(stderr, "kexec_load: kexec_file_load: %s (errno %d)\n", strerror(e), e);
        return 1;
    }
    printf("kexec_load: loaded %s for crash, cmdline \"%s\"\n", argv[1], cmdline);
    return 0;
}
