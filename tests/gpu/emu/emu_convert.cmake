# Rewrites the kernel launches of a .cu file for the CPU emulation:
#   name<<<grid, block, smem, stream>>>(args)  ->  emu_launch(grid, block, smem, stream, name, args)
# usage: cmake -DIN=file.cu -DOUT=file.cpp -P emu_convert.cmake
file(READ "${IN}" src)
string(REGEX REPLACE "([A-Za-z_0-9]+)<<<((->|[^>])*)>>>\\(" "emu_launch(\\2, \\1, " src "${src}")
file(WRITE "${OUT}" "#line 1 \"${IN}\"\n${src}")
