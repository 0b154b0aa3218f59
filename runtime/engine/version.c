/* tpd_version(): the version the build was configured with.  The top-level
 * CMakeLists passes CMake's PROJECT_VERSION as TPD_PROJECT_VERSION; nothing
 * else reads that macro (programs call tpd_version()). */
#include "runtime/engine/tpdecode.h"

#ifndef TPD_PROJECT_VERSION
#error "TPD_PROJECT_VERSION is not defined: build with the project's CMakeLists (it passes PROJECT_VERSION)"
#endif

const char *tpd_version(void) { return TPD_PROJECT_VERSION; }
