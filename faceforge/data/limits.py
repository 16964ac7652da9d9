"""Pixel budgets of decoded images, in a module that imports nothing, so the command line
can show them as option defaults without loading OpenCV or NumPy."""

#: pixel budget of photos (verify, enroll, search, align): 8192x8192, 192 MiB decoded; more
#: than any phone's full-resolution 64-megapixel photo
MAX_PHOTO_PIXELS = 8192 * 8192
#: pixel budget of dataset images (training sets, .bin, .rec, LMDB): 1024x1024, 3 MiB
#: decoded; 83x a 112x112 crop, and the largest size any public face dataset stores (FFHQ,
#: CelebA-HQ), so unaligned sets still load while a bomb costs a loader worker nothing
MAX_DATASET_PIXELS = 1024 * 1024
