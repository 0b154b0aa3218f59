# CUDA backend (kernels/cuda) and, with NCCL, the NCCL communicator.
# Included from the top-level CMakeLists when nvcc and cuBLASLt were found.
# Targets are chosen with explicit -gencode flags (TPD_CUDA_ARCHS), so CMake
# adds no architecture flags of its own, to any target, and never device-links.
set(CMAKE_CUDA_ARCHITECTURES OFF)
enable_language(CUDA)
set_target_properties(tpdecode_lib PROPERTIES CUDA_ARCHITECTURES OFF)

file(GLOB TPD_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/kernels/cuda/*.cu)
add_library(tpd_cuda STATIC ${TPD_CUDA_SOURCES})
# the -gencode flags below choose the targets; CMake adds none of its own
set_target_properties(tpd_cuda PROPERTIES CUDA_ARCHITECTURES OFF POSITION_INDEPENDENT_CODE ON)
target_include_directories(tpd_cuda PRIVATE ${CMAKE_CURRENT_SOURCE_DIR} ${CJSON_INCLUDE_DIR})
target_compile_definitions(tpd_cuda PUBLIC TPD_HAVE_CUDA)

# SASS for each arch in TPD_CUDA_ARCHS, plus PTX of the first (JIT for newer chips)
set(TPD_CUDA_GENCODE "")
foreach(arch ${TPD_CUDA_ARCHS})
  list(APPEND TPD_CUDA_GENCODE "SHELL:-gencode arch=compute_${arch},code=sm_${arch}")
endforeach()
list(GET TPD_CUDA_ARCHS 0 TPD_CUDA_ARCH0)
list(APPEND TPD_CUDA_GENCODE "SHELL:-gencode arch=compute_${TPD_CUDA_ARCH0},code=compute_${TPD_CUDA_ARCH0}")
target_compile_options(tpd_cuda PRIVATE
  ${TPD_CUDA_GENCODE}
  "$<$<BOOL:${TPD_WERROR}>:SHELL:-Werror all-warnings>"
  "-Xcompiler=-Wall,-Wextra$<$<BOOL:${TPD_WERROR}>:,-Werror>"
  "SHELL:-Xptxas -v")
# ptxas -v goes to <object>.ptxas.log (checked by kernels/cuda/check_ptxas.sh)
set_target_properties(tpd_cuda PROPERTIES CUDA_COMPILER_LAUNCHER "sh;${CMAKE_CURRENT_SOURCE_DIR}/kernels/cuda/ptxas_log.sh")
# tpd_cuda reports errors through tpdecode_lib (tpd_fail_at, tpd_param_int):
# the two static libraries depend on each other, which CMake links in a cycle
target_link_libraries(tpd_cuda PUBLIC CUDA::cudart CUDA::cublasLt INTERFACE tpdecode_lib)

target_link_libraries(tpdecode_lib PUBLIC tpd_cuda)
message(STATUS "tpdecode: CUDA targets: ${TPD_CUDA_ARCHS} (+ PTX of ${TPD_CUDA_ARCH0}), nvcc ${CMAKE_CUDA_COMPILER_VERSION}")

if(TPD_HAVE_NCCL)
  target_sources(tpdecode_lib PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/comm/comm_nccl.c)
  target_compile_definitions(tpdecode_lib PUBLIC TPD_HAVE_NCCL)
  target_include_directories(tpdecode_lib PUBLIC ${NCCL_INCLUDE_DIR})
  target_link_libraries(tpdecode_lib PUBLIC ${NCCL_LIBRARY})
endif()
