# The cpu backend's external GEMM libraries, found the same way at build time and by the
# installed package config.
#
# glimpse_find_cblas(<out-var>): defines the imported target glimpse::cblas (a CBLAS
# with cblas_sgemm, OpenBLAS preferred) and sets <out-var> to ON when one is found.
# Used both at build time and by the installed package config, so a consumer links
# the same BLAS the library was configured with.
function(glimpse_find_cblas out)
  if(TARGET glimpse::cblas)
    set(${out} ON PARENT_SCOPE)
    return()
  endif()
  find_path(GLIMPSE_CBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas x86_64-linux-gnu aarch64-linux-gnu)
  find_library(GLIMPSE_CBLAS_LIBRARY NAMES openblas cblas blas)
  if(GLIMPSE_CBLAS_INCLUDE_DIR AND GLIMPSE_CBLAS_LIBRARY)
    add_library(glimpse::cblas INTERFACE IMPORTED GLOBAL)
    set_target_properties(glimpse::cblas PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${GLIMPSE_CBLAS_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES "${GLIMPSE_CBLAS_LIBRARY}")
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
  if(TARGET glimpse::onednn)
    set(${out} ON PARENT_SCOPE)
    return()
  endif()
  find_path(GLIMPSE_ONEDNN_INCLUDE_DIR oneapi/dnnl/dnnl.h)
  find_library(GLIMPSE_ONEDNN_LIBRARY NAMES dnnl)
  if(GLIMPSE_ONEDNN_INCLUDE_DIR AND GLIMPSE_ONEDNN_LIBRARY)
    add_library(glimpse::onednn INTERFACE IMPORTED GLOBAL)
    set_target_properties(glimpse::onednn PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${GLIMPSE_ONEDNN_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES "${GLIMPSE_ONEDNN_LIBRARY}")
    set(${out} ON PARENT_SCOPE)
  else()
    set(${out} OFF PARENT_SCOPE)
  endif()
endfunction()
