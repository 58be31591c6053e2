/* A Maestro producer/consumer pair in two processes. This process starts a
 * pool manager inside itself (mstro_pm_start), runs itself again as the
 * consumer with MSTRO_POOL_MANAGER_INFO set from mstro_pm_getinfo, and
 * produces; the consumer joins the pool and demands. A pipe tells the
 * producer when the consumer has required the CDO, so that the withdraw
 * waits for its demand (Maestro's hand-over rule).
 * Exits 0 when the consumer saw the producer's bytes. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cdo.h"
#include "maestro.h"

#define N 100000

#define CHECK(call)                                                            \
  do {                                                                         \
    mstro_status s_ = (call);                                                  \
    if (s_ != MSTRO_OK) {                                                      \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,           \
              mstro_status_description(s_));                                   \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

static int consume(int ready_fd) {
  CHECK(mstro_init("demo", "consumer", 1));
  if (cdo_deployment_get() != CDO_POOL_MANAGER_CLIENT) { fprintf(stderr, "not a client\n"); return 1; }
  mstro_cdo cdo;
  CHECK(mstro_cdo_declare("demo/step7/rho", MSTRO_ATTR_DEFAULT, &cdo));
  CHECK(mstro_cdo_seal(cdo));
  CHECK(mstro_cdo_require(cdo));
  if (write(ready_fd, "r", 1) != 1) return 1;
  close(ready_fd);
  CHECK(mstro_cdo_demand(cdo));
  void *data;
  int64_t len;
  CHECK(mstro_cdo_access_ptr(cdo, &data, &len));
  const int32_t *v = data;
  if (len != N * (int64_t)sizeof(int32_t)) { fprintf(stderr, "got %ld bytes\n", (long)len); return 1; }
  for (int i = 0; i < N; i++)
    if (v[i] != 3 * i + 1) { fprintf(stderr, "element %d is %d\n", i, v[i]); return 1; }
  CHECK(mstro_cdo_dispose(cdo));
  CHECK(mstro_finalize());
  printf("consumer (pid %d): %ld bytes as produced\n", (int)getpid(), (long)len);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "consumer") == 0) return consume(atoi(argv[2]));

  CHECK(mstro_init("demo", "producer", 0));
  CHECK(mstro_pm_start());
  char *info = NULL;
  CHECK(mstro_pm_getinfo(&info));
  if (cdo_deployment_get() != CDO_POOL_MANAGER_HERE) { fprintf(stderr, "no manager here\n"); return 1; }

  int ready[2];
  if (pipe(ready) != 0) return 1;
  pid_t child = fork();
  if (child == 0) {
    close(ready[0]);
    setenv("MSTRO_POOL_MANAGER_INFO", info, 1);
    char fd[16];
    snprintf(fd, sizeof fd, "%d", ready[1]);
    execl("/proc/self/exe", argv[0], "consumer", fd, (char *)NULL);
    perror("execl");
    _exit(127);
  }
  close(ready[1]);
  free(info);

  int32_t *rho = malloc(N * sizeof(int32_t));
  for (int i = 0; i < N; i++) rho[i] = 3 * i + 1;
  int64_t size = N * sizeof(int32_t);
  mstro_cdo cdo;
  CHECK(mstro_cdo_declare("demo/step7/rho", MSTRO_ATTR_DEFAULT, &cdo));
  CHECK(mstro_cdo_attribute_set(cdo, MSTRO_ATTR_CORE_CDO_RAW_PTR, rho, false, true));
  CHECK(mstro_cdo_attribute_set(cdo, MSTRO_ATTR_CORE_CDO_SCOPE_LOCAL_SIZE, &size, true, false));
  CHECK(mstro_cdo_seal(cdo));
  CHECK(mstro_cdo_offer(cdo));
  char r;
  if (read(ready[0], &r, 1) != 1) { fprintf(stderr, "consumer died before requiring\n"); return 1; }
  CHECK(mstro_cdo_withdraw(cdo)); /* waits for the consumer's demand */
  CHECK(mstro_cdo_dispose(cdo));
  free(rho);

  int status;
  waitpid(child, &status, 0);
  CHECK(mstro_finalize());
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) { fprintf(stderr, "consumer failed\n"); return 1; }
  printf("maestro_processes: ok\n");
  return 0;
}
