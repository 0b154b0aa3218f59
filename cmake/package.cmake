# libtpdecode as a library others build on: the shared library next to the
# static one, the install rules and tpdecode.pc.  Included from the top-level
# CMakeLists after the library and the programs are defined.
#
#   lib/libtpdecode.a, lib/libtpdecode.so[.MAJOR[.MINOR.PATCH]]
#   include/tpdecode/tpdecode.h and the headers it includes, in their source
#     layout (comm/comm.h, runtime/...); tpdecode.pc adds -I include/tpdecode
#   lib/pkgconfig/tpdecode.pc, bin/tpdecode, tpdecode-bench, tpdecode-synth,
#   share/doc/tpdecode/examples/embed.c
#
# The programs and the tests keep linking the static library; the shared one
# is built from the same objects and holds exactly what libtpdecode.a holds.
include(GNUInstallDirs)
include(CheckCCompilerFlag)

# ---- the objects: position-independent, so the shared library can use them ----
set_target_properties(tpdecode_lib PROPERTIES POSITION_INDEPENDENT_CODE ON)
# PIC code may call its own global functions directly (no PLT) and inline
# them, as the non-PIC code did: the library does not expect them interposed
check_c_compiler_flag(-fno-semantic-interposition TPD_HAVE_NO_SEMANTIC_INTERPOSITION)
if(TPD_HAVE_NO_SEMANTIC_INTERPOSITION)
  target_compile_options(tpdecode_lib PRIVATE $<$<COMPILE_LANGUAGE:C>:-fno-semantic-interposition>)
endif()
if(TPD_HAVE_CUDA)
  # the installed libtpdecode.a carries the CUDA kernels too (tpd_cuda is
  # PIC), so a static link needs no second archive
  target_sources(tpdecode_lib PRIVATE $<TARGET_OBJECTS:tpd_cuda>)
endif()

# ---- libtpdecode.so: the static library's objects, its dependencies linked in ----
set(TPD_EXPORT_MAP ${CMAKE_CURRENT_SOURCE_DIR}/cmake/tpdecode.map)
add_library(tpdecode_shared SHARED $<TARGET_OBJECTS:tpdecode_lib>)
target_link_libraries(tpdecode_shared PRIVATE tpdecode_lib)
set_target_properties(tpdecode_shared PROPERTIES
  OUTPUT_NAME tpdecode VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}
  INSTALL_RPATH_USE_LINK_PATH ON LINK_DEPENDS ${TPD_EXPORT_MAP})
# exports only tpd_* (cmake/tpdecode.map); every symbol resolved at link time
target_link_options(tpdecode_shared PRIVATE "LINKER:--version-script=${TPD_EXPORT_MAP}" "LINKER:--no-undefined")

# ---- install ----
install(TARGETS tpdecode_lib tpdecode_shared
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
# the programs link the static library; they keep the path of a dependency
# outside the system folders (the CUDA toolkit's) when installed
set_target_properties(${TPD_PROGRAMS} PROPERTIES INSTALL_RPATH_USE_LINK_PATH ON)
install(TARGETS ${TPD_PROGRAMS} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
if(TARGET tpdecode-server) # built where libmicrohttpd was found
  set_target_properties(tpdecode-server PROPERTIES INSTALL_RPATH_USE_LINK_PATH ON)
  install(TARGETS tpdecode-server RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
# the public header and, in their source layout, the headers it includes
# (the ctest install.pkgconfig compiles against the installed tree alone, so
# a header missing here fails it)
set(TPD_PUBLIC_HEADERS comm/comm.h runtime/base/dtype.h runtime/base/error.h runtime/model/config.h
  runtime/engine/sampler.h runtime/model/tokenizer.h)
if(TPD_HAVE_MPI)
  # tpd_comm_mpi_from (needs <mpi.h>); a build without MPI has no such function
  list(APPEND TPD_PUBLIC_HEADERS comm/tpdecode_mpi.h)
endif()
install(FILES runtime/engine/tpdecode.h runtime/engine/tpdecode_sched.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/tpdecode)
foreach(h ${TPD_PUBLIC_HEADERS})
  get_filename_component(dir ${h} DIRECTORY)
  install(FILES ${h} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/tpdecode/${dir})
endforeach()
install(FILES launch/examples/embed.c launch/examples/serve.c DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

# ---- tpdecode.pc ----
# Libs.private: what a static link adds after libtpdecode.a, from what this
# build links (cJSON, PCRE2, MPI, CUDA, NCCL, libstdc++ with CUDA, libm, threads).  A library file
# /dir/libX.so becomes -L/dir -lX, so a fully static link may pick libX.a.
# No Requires.private: the .pc names of MPI and CUDA differ between vendors.
set(TPD_PC_PRIVATE ${CJSON_LIBRARY} ${PCRE2_LIBRARY})
if(TPD_HAVE_MPI)
  separate_arguments(mpi_flags UNIX_COMMAND "${MPI_C_LINK_FLAGS}")
  list(APPEND TPD_PC_PRIVATE ${mpi_flags} ${MPI_C_LIBRARIES})
endif()
if(TPD_HAVE_CUDA)
  list(APPEND TPD_PC_PRIVATE ${CUDA_cublasLt_LIBRARY} ${CUDA_cudart_LIBRARY})
  if(TPD_HAVE_NCCL)
    list(APPEND TPD_PC_PRIVATE ${NCCL_LIBRARY})
  endif()
  # the kernels' host code is C++ (nvcc): static initialisers need libstdc++
  list(APPEND TPD_PC_PRIVATE -lstdc++)
endif()
list(APPEND TPD_PC_PRIVATE -lm)
if(CMAKE_THREAD_LIBS_INIT)
  list(APPEND TPD_PC_PRIVATE ${CMAKE_THREAD_LIBS_INIT})
else()
  list(APPEND TPD_PC_PRIVATE -pthread)
endif()
set(pc_flags "")
set(pc_dirs "")
foreach(item ${TPD_PC_PRIVATE})
  if(item MATCHES "^(.*)/lib([^/]+)\\.(so|a)(\\.[0-9.]+)?$")
    set(d ${CMAKE_MATCH_1})
    if(NOT d IN_LIST pc_dirs)
      list(APPEND pc_dirs ${d})
      list(APPEND pc_flags "-L${d}")
    endif()
    list(APPEND pc_flags "-l${CMAKE_MATCH_2}")
  elseif(NOT item IN_LIST pc_flags)
    list(APPEND pc_flags ${item})
  endif()
endforeach()
list(JOIN pc_flags " " TPD_PC_LIBS_PRIVATE)

# relocatable: the prefix is found from the .pc file's own folder (an
# absolute CMAKE_INSTALL_LIBDIR gives up on that: the configured prefix)
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(TPD_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(TPD_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  file(RELATIVE_PATH up "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
  string(REGEX REPLACE "/$" "" up "${up}")
  set(TPD_PC_PREFIX "\${pcfiledir}/${up}")
  set(TPD_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(TPD_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(TPD_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/cmake/tpdecode.pc.in ${PROJECT_BINARY_DIR}/tpdecode.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/tpdecode.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
message(STATUS "tpdecode: install: lib (libtpdecode.a, libtpdecode.so.${PROJECT_VERSION_MAJOR}), "
  "include/tpdecode, bin, ${CMAKE_INSTALL_LIBDIR}/pkgconfig/tpdecode.pc (Libs.private: ${TPD_PC_LIBS_PRIVATE})")
