// termios2 (arbitrary baud rates) lives in the kernel's <asm/termbits.h>, which cannot be included
// together with glibc's <termios.h>; hence this file of its own.
#include "CJMPSystem.h"

#include <asm/ioctls.h>
#include <asm/termbits.h>
#include <errno.h>

extern int ioctl(int fd, unsigned long request, ...);

int jmp_set_baud_rate(int fd, unsigned int rate) {
    struct termios2 settings;
    if (ioctl(fd, TCGETS2, &settings) != 0) return -1;
    settings.c_cflag &= ~(CBAUD | (CBAUD << IBSHIFT));
    settings.c_cflag |= BOTHER | (BOTHER << IBSHIFT);
    settings.c_ispeed = rate;
    settings.c_ospeed = rate;
    return ioctl(fd, TCSETS2, &settings);
}

long jmp_get_baud_rate(int fd) {
    struct termios2 settings;
    if (ioctl(fd, TCGETS2, &settings) != 0) return -1;
    return (long)settings.c_ospeed;
}
