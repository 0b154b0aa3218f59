# What tests/gpu/device_check.sh needs beyond the GPU tests; included from
# tests/gpu/CMakeLists.txt after its CUDA tests (before the emulation, whose
# parts here are deferred to the end of that directory).
#   tpd-gpu-bw                 read-only and copy bandwidth probes and the
#                              GEMV bandwidth table (gpu_bw.cu)
#   gpu.nccl without MPI       the one-rank NCCL test bootstrapped over the
#                              single-process communicator (with MPI it runs
#                              under mpirun -np 1, registered above)
#   gpu.device_check.rehearse  device_check.sh --rehearse: every stage that
#                              needs no GPU, on a carry laid out from this
#                              build, so a broken script fails in CI
#   gpu.emu.bw                 tpd-gpu-bw's host logic and kernels under the
#                              CPU emulation (small shapes)

if(TPD_HAVE_CUDA)
  add_executable(tpd-gpu-bw gpu_bw.cu)
  target_link_libraries(tpd-gpu-bw PRIVATE tpdecode_lib)
  target_compile_options(tpd-gpu-bw PRIVATE ${TPD_CUDA_GENCODE}
    "$<$<BOOL:${TPD_WERROR}>:SHELL:-Werror all-warnings>" "-Xcompiler=-Wall,-Wextra$<$<BOOL:${TPD_WERROR}>:,-Werror>")
  set_target_properties(tpd-gpu-bw PROPERTIES CUDA_ARCHITECTURES OFF RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR})

  if(TPD_HAVE_NCCL AND NOT (TPD_HAVE_MPI AND TPD_GPU_MPIEXEC))
    tpd_gpu_exe(test_gpu_nccl test_gpu_nccl.c)
    tpd_gpu_test(gpu.nccl 120 test_gpu_nccl)
  endif()

  find_program(TPD_BASH bash)
  if(TPD_BASH)
    add_test(NAME gpu.device_check.rehearse
      COMMAND ${TPD_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/device_check.sh --rehearse
      WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
    set_tests_properties(gpu.device_check.rehearse PROPERTIES TIMEOUT 400
      ENVIRONMENT "TPD_DC_BUILD=${PROJECT_BINARY_DIR};OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
  endif()
endif()

function(tpd_device_check_emu)
  if(NOT TARGET tpd_emu_lib)
    return()
  endif()
  tpd_emu_convert(${CMAKE_CURRENT_SOURCE_DIR}/gpu_bw.cu bw_cpp)
  tpd_emu_exe(emu_tpd_gpu_bw ${bw_cpp})
  target_compile_options(emu_tpd_gpu_bw PRIVATE -Wno-unknown-pragmas) # #pragma unroll
  set_target_properties(emu_tpd_gpu_bw PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR})
  # both commands succeed, and the last row (TP 2 LM head, batch 9: cuBLASLt) is there
  add_test(NAME gpu.emu.bw COMMAND sh -c
    "\"$0\" read --tiny && \"$0\" gemv --tiny --tp 1,2 --batch 1,9 --read-gbs 100 > \"$1\" && cat \"$1\" && grep -q '^gemv,2,lm_head,9,500,256,cublaslt,' \"$1\""
    $<TARGET_FILE:emu_tpd_gpu_bw> ${CMAKE_CURRENT_BINARY_DIR}/emu_bw.csv)
  set_tests_properties(gpu.emu.bw PROPERTIES TIMEOUT 300 ENVIRONMENT "${emu_env}")
endfunction()
cmake_language(DEFER CALL tpd_device_check_emu)
