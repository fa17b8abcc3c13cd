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
