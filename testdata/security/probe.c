/* A static probe for tests/it/security.rs: attempts one privileged operation inside a RUN
 * step and prints `NAME=ok` or `NAME=<errno name>`. Exit status 0 when the operation was
 * allowed, 1 when it was refused. Built by the test with `gcc -static`. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *errno_name(int err) {
    switch (err) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case EINVAL: return "EINVAL";
    case ENOSYS: return "ENOSYS";
    case ENOENT: return "ENOENT";
    case EROFS: return "EROFS";
    case EBADF: return "EBADF";
    case EFAULT: return "EFAULT";
    case EAGAIN: return "EAGAIN";
    default: return "OTHER";
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: probe NAME\n");
        return 2;
    }
    const char *what = argv[1];
    long ret = -1;
    char zero[256];
    memset(zero, 0, sizeof zero);
    if (!strcmp(what, "unshare-user")) {
        ret = syscall(SYS_unshare, CLONE_NEWUSER);
    } else if (!strcmp(what, "unshare-mount")) {
        ret = syscall(SYS_unshare, CLONE_NEWNS);
    } else if (!strcmp(what, "clone-newuser")) {
        ret = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
        if (ret == 0) _exit(0);
        if (ret > 0) waitpid((pid_t)ret, 0, 0);
    } else if (!strcmp(what, "mount-proc")) {
        mkdir("/probe-mnt", 0755);
        ret = mount("proc", "/probe-mnt", "proc", 0, 0);
    } else if (!strcmp(what, "mount-tmpfs")) {
        mkdir("/probe-mnt", 0755);
        ret = mount("tmpfs", "/probe-mnt", "tmpfs", 0, 0);
    } else if (!strcmp(what, "keyctl")) {
        /* add_key("user", "kiln-probe", "x", 1, KEY_SPEC_PROCESS_KEYRING) */
        ret = syscall(SYS_add_key, "user", "kiln-probe", "x", 1, -2);
    } else if (!strcmp(what, "bpf")) {
        /* BPF_MAP_CREATE with an all-zero attribute: EINVAL when allowed. */
        ret = syscall(SYS_bpf, 0, zero, 64);
    } else if (!strcmp(what, "perf_event_open")) {
        ret = syscall(SYS_perf_event_open, zero, 0, -1, -1, 0);
    } else if (!strcmp(what, "kexec_load")) {
        ret = syscall(SYS_kexec_load, 0, 0, 0, 0);
    } else if (!strcmp(what, "init_module")) {
        ret = syscall(SYS_init_module, zero, 0, "");
    } else if (!strcmp(what, "setns")) {
        ret = syscall(SYS_setns, -1, 0);
    } else if (!strcmp(what, "reboot")) {
        /* Invalid magic numbers: EINVAL when allowed, never a reboot. */
        ret = syscall(SYS_reboot, 0, 0, 0, 0);
    } else if (!strcmp(what, "open_by_handle_at")) {
        ret = syscall(SYS_open_by_handle_at, AT_FDCWD, zero, O_RDONLY);
    } else if (!strcmp(what, "mknod-block")) {
        ret = mknod("/probe-sda", S_IFBLK | 0600, makedev(8, 0));
    } else if (!strcmp(what, "chroot")) {
        ret = chroot("/");
    } else {
        fprintf(stderr, "probe: unknown operation %s\n", what);
        return 2;
    }
    if (ret >= 0) {
        printf("%s=ok\n", what);
        return 0;
    }
    printf("%s=%s\n", what, errno_name(errno));
    return 1;
}
