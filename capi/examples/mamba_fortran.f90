! mamba from Fortran through iso_c_binding: a placement preferring HBM,
! then DRAM; a real(8) array allocated there, used as a Fortran array,
! and freed. Stops with a non-zero code on any error.
module mamba
  use iso_c_binding
  implicit none
  integer(c_int), parameter :: MAMBA_OK = 0
  integer(c_int32_t), parameter :: MAMBA_TIER_DRAM = 0, MAMBA_TIER_HBM = 1
  interface
    integer(c_int) function mamba_init(config_file) bind(c, name="mamba_init")
      import :: c_int, c_ptr
      type(c_ptr), value :: config_file
    end function
    integer(c_int) function mamba_finalize() bind(c, name="mamba_finalize")
      import :: c_int
    end function
    integer(c_int) function mamba_placement_prefer(tiers, count, near, placement) &
        bind(c, name="mamba_placement_prefer")
      import :: c_int, c_int32_t, c_size_t, c_ptr
      integer(c_int32_t), intent(in) :: tiers(*)
      integer(c_size_t), value :: count
      integer(c_int32_t), value :: near
      type(c_ptr), intent(out) :: placement
    end function
    integer(c_int) function mamba_alloc(placement, len, align, ptr) bind(c, name="mamba_alloc")
      import :: c_int, c_size_t, c_ptr
      type(c_ptr), value :: placement
      integer(c_size_t), value :: len, align
      type(c_ptr), intent(out) :: ptr
    end function
    integer(c_int) function mamba_free(ptr) bind(c, name="mamba_free")
      import :: c_int, c_ptr
      type(c_ptr), value :: ptr
    end function
  end interface
end module

program fortran_example
  use iso_c_binding
  use mamba
  implicit none
  integer, parameter :: n = 100000
  type(c_ptr) :: placement, mem
  real(c_double), pointer :: a(:)
  integer(c_int32_t) :: tiers(2)
  integer :: i

  if (mamba_init(c_null_ptr) /= MAMBA_OK) error stop 1
  tiers = [MAMBA_TIER_HBM, MAMBA_TIER_DRAM]
  if (mamba_placement_prefer(tiers, 2_c_size_t, -1_c_int32_t, placement) /= MAMBA_OK) error stop 2
  if (mamba_alloc(placement, int(8 * n, c_size_t), 64_c_size_t, mem) /= MAMBA_OK) error stop 3
  call c_f_pointer(mem, a, [n])
  a = [(real(i, c_double), i = 1, n)]
  if (abs(sum(a) - 0.5d0 * n * (n + 1)) > 1d-6) error stop 4
  print '(a, i0, a, f0.1)', 'fortran: ', n, ' doubles in a mamba placement, sum ', sum(a)
  if (mamba_free(mem) /= MAMBA_OK) error stop 5
  if (mamba_free(mem) == MAMBA_OK) error stop 6
  if (mamba_finalize() /= MAMBA_OK) error stop 7
  print '(a)', 'mamba_fortran: ok'
end program
