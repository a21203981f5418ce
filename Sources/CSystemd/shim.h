// libsystemd's daemon interface (socket activation, sd_notify, watchdog), found through
// pkg-config; Debian package libsystemd-dev.
#include <systemd/sd-daemon.h>
