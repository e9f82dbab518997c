module example.invalid/go-minimal

go 1.19
