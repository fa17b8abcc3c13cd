# The cpu backend's external GEMM libraries, found the same way at build time and by the
# installed package config (so a consumer links what the library was configured with).

# _glimpse_import(<target> <include-dir> <library>): the imported target, when both were found.
function(_glimpse_import target inc lib)
  if(inc AND lib)
    add_library(${target} INTERFACE IMPORTED GLOBAL)
    set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${inc}" INTERFACE_LINK_LIBRARIES "${lib}")
  endif()
endfunction()

# glimpse_find_cblas(<out-var>): defines the imported target glimpse::cblas (a CBLAS
# with cblas_sgemm, OpenBLAS preferred) and sets <out-var> to ON when one is found.
function(glimpse_find_cblas out)
  if(NOT TARGET glimpse::cblas)
    find_path(GLIMPSE_CBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas x86_64-linux-gnu aarch64-linux-gnu)
    find_library(GLIMPSE_CBLAS_LIBRARY NAMES openblas cblas blas)
    _glimpse_import(glimpse::cblas "${GLIMPSE_CBLAS_INCLUDE_DIR}" "${GLIMPSE_CBLAS_LIBRARY}")
  endif()
  if(TARGET glimpse::cblas)
    set(${out} ON PARENT_SCOPE)
  else()
    set(${out} OFF PARENT_SCOPE)
  endif()
endfunction()

# glimpse_find_onednn(<out-var>): defines the imported target glimpse::onednn (oneDNN's C API,
# <oneapi/dnnl/dnnl.h> and libdnnl; Debian: libdnnl-dev) and sets <out-var> to ON when found.
# Not through dnnl-config.cmake: Debian's makes every consumer link OpenCL, which the cpu
# matmul does not use.
function(glimpse_find_onednn out)
  if(NOT TARGET glimpse::onednn)
    find_path(GLIMPSE_ONEDNN_INCLUDE_DIR oneapi/dnnl/dnnl.h)
    find_library(GLIMPSE_ONEDNN_LIBRARY NAMES dnnl)
    _glimpse_import(glimpse::onednn "${GLIMPSE_ONEDNN_INCLUDE_DIR}" "${GLIMPSE_ONEDNN_LIBRARY}")
  endif()
  if(TARGET glimpse::onednn)
    set(${out} ON PARENT_SCOPE)
  else()
    set(${out} OFF PARENT_SCOPE)
  endif()
endfunction()
