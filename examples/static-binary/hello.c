/* A statically linked program for a FROM scratch image: prints a greeting and its arguments;
 * `exit N` as the arguments makes it exit with status N (to check exit-code propagation). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "exit") == 0) {
        return atoi(argv[2]);
    }
    printf("hello from a static binary (pid %d, uid %d)\n", (int)getpid(), (int)getuid());
    for (int i = 1; i < argc; i++) {
        printf("arg %d: %s\n", i, argv[i]);
    }
    return 0;
}
