#pragma once
// The library version; CMakeLists.txt reads it from here (one source of truth).

#define GLIMPSE_VERSION_MAJOR 0
#define GLIMPSE_VERSION_MINOR 1
#define GLIMPSE_VERSION_PATCH 0
#define GLIMPSE_VERSION_STRING "0.1.0"
